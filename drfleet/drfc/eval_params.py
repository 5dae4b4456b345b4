"""The evaluation params YAML, as DRfC's scripts/evaluation/prepare-config.py writes it for the
same env files (key for key, the same defaults and quoting), and where the simapp will put the
evaluation's metrics. Pure: `now` is passed in."""

from __future__ import annotations

import time
from typing import Any

from drfleet.drfc.config import TrainingConfig
from drfleet.drfc.params import H2B, H2B_SETTINGS, OA, OA_SETTINGS, minio_url, race_settings

HEAD_TO_MODEL = "HEAD_TO_MODEL"


def warnings(cfg: TrainingConfig) -> list[str]:
    """DRfC's template sets DR_EVAL_COLLISION_PENALTY, but its prepare-config.py reads
    DR_COLLISION_PENALTY (as drfleet's params do): a changed value there would pass unseen."""
    set_ = cfg.values.get("DR_EVAL_COLLISION_PENALTY")
    if set_ is None or set_.strip() == "5.0" or "DR_COLLISION_PENALTY" in cfg.values:
        return []
    return [
        f"{cfg.where('DR_EVAL_COLLISION_PENALTY')}: DR_EVAL_COLLISION_PENALTY={set_} has no "
        "effect: DRfC's evaluation (scripts/evaluation/prepare-config.py) reads "
        f"DR_COLLISION_PENALTY, and so does drfleet's; set DR_COLLISION_PENALTY={set_}"
    ]


def params_name(cfg: TrainingConfig) -> str:
    return cfg.get("DR_LOCAL_S3_EVAL_PARAMS_FILE", "eval_params.yaml")


def stamp(now: float) -> str:
    """prepare-config.py's eval_time: local time, to the second."""
    return time.strftime("%Y%m%d%H%M%S", time.localtime(now))


def params(cfg: TrainingConfig, now: float) -> dict[str, Any]:
    """The eval params for cfg, evaluated at `now` (the metrics and simtrace keys carry it)."""
    g = cfg.values.get
    bucket = g("DR_LOCAL_S3_BUCKET", "bucket")
    prefix = g("DR_LOCAL_S3_MODEL_PREFIX", "rl-deepracer-sagemaker")
    when = stamp(now)
    c: dict[str, Any] = {
        "CAR_COLOR": [],
        "BODY_SHELL_TYPE": [],
        "RACER_NAME": [],
        "DISPLAY_NAME": [],
        "MODEL_S3_PREFIX": [prefix],
        "MODEL_S3_BUCKET": [bucket],
        "SIMTRACE_S3_PREFIX": [f"{prefix}/evaluation-{when}"],
        "SIMTRACE_S3_BUCKET": [bucket],
        "KINESIS_VIDEO_STREAM_NAME": g("DR_KINESIS_STREAM_NAME", ""),
        "METRICS_S3_BUCKET": [bucket],
        "METRICS_S3_OBJECT_KEY": [metrics_key(cfg, now)],
        "MP4_S3_BUCKET": [],
        "MP4_S3_OBJECT_PREFIX": [],
        "AWS_REGION": g("DR_AWS_APP_REGION", "us-east-1"),
        "JOB_TYPE": "EVALUATION",
        "ROBOMAKER_SIMULATION_JOB_ACCOUNT_ID": "Dummy",
    }
    endpoint = minio_url(cfg.values)
    if endpoint is not None:
        c["S3_ENDPOINT_URL"] = endpoint
    if _true(g("DR_EVAL_SAVE_MP4", "False")):
        c["MP4_S3_BUCKET"].append(bucket)
        c["MP4_S3_OBJECT_PREFIX"].append(f"{g('DR_LOCAL_S3_MODEL_PREFIX', 'bucket')}/mp4")
    c["EVAL_CHECKPOINT"] = g("DR_EVAL_CHECKPOINT", "last")
    c["BODY_SHELL_TYPE"].append(g("DR_CAR_BODY_SHELL_TYPE", "deepracer"))
    c["CAR_COLOR"].append(g("DR_CAR_COLOR", "Red"))
    c["DISPLAY_NAME"].append(g("DR_DISPLAY_NAME", "racer1"))
    c["RACER_NAME"].append(g("DR_RACER_NAME", "racer1"))
    c.update(
        {
            "RACE_TYPE": g("DR_RACE_TYPE", "TIME_TRIAL"),
            "WORLD_NAME": g("DR_WORLD_NAME", "LGSWide"),
            "NUMBER_OF_TRIALS": g("DR_EVAL_NUMBER_OF_TRIALS", "5"),
            "ENABLE_DOMAIN_RANDOMIZATION": g("DR_ENABLE_DOMAIN_RANDOMIZATION", "false"),
            "RESET_BEHIND_DIST": g("DR_EVAL_RESET_BEHIND_DIST", "1.0"),
            "IS_CONTINUOUS": g("DR_EVAL_IS_CONTINUOUS", "True"),
            "NUMBER_OF_RESETS": g("DR_EVAL_MAX_RESETS", "0"),
            "OFF_TRACK_PENALTY": g("DR_EVAL_OFF_TRACK_PENALTY", "5.0"),
            "COLLISION_PENALTY": g("DR_COLLISION_PENALTY", "5.0"),
            "CAMERA_MAIN_ENABLE": g("DR_CAMERA_MAIN_ENABLE", "True"),
            "CAMERA_SUB_ENABLE": g("DR_CAMERA_SUB_ENABLE", "True"),
            # DRfC's default is the boolean False, not a string; kept for identical output
            "REVERSE_DIR": g("DR_EVAL_REVERSE_DIRECTION", False),
            "ENABLE_EXTRA_KVS_OVERLAY": g("DR_ENABLE_EXTRA_KVS_OVERLAY", "False"),
        }
    )
    if c["RACE_TYPE"] == OA:
        c.update(race_settings(cfg.values, OA_SETTINGS))
        c["OBSTACLE_TYPE"] = g("DR_OA_OBSTACLE_TYPE", "box_obstacle")
        positions = g("DR_OA_OBJECT_POSITIONS", "")
        if positions:
            c["OBJECT_POSITIONS"] = positions.split(";")
            c["NUMBER_OF_OBSTACLES"] = str(len(c["OBJECT_POSITIONS"]))
    if c["RACE_TYPE"] == H2B:
        c.update(race_settings(cfg.values, H2B_SETTINGS))
        c["PENALTY_SECONDS"] = g("DR_H2B_BOT_CAR_PENALTY", "2.0")
    if c["RACE_TYPE"] == HEAD_TO_MODEL:
        _head_to_model(c, cfg, now)
    return c


def _head_to_model(c: dict[str, Any], cfg: TrainingConfig, now: float) -> None:
    """The opponent's entries, as prepare-config.py appends them (its metrics key uses whole
    seconds since the epoch, its mp4 prefix DR_EVAL_OPP_MODEL_PREFIX: both as DRfC has them)."""
    g = cfg.values.get
    bucket = g("DR_LOCAL_S3_BUCKET", "bucket")
    opp = g("DR_EVAL_OPP_S3_MODEL_PREFIX", "rl-deepracer-sagemaker")
    c["MODEL_S3_PREFIX"].append(opp)
    c["MODEL_S3_BUCKET"].append(bucket)
    c["SIMTRACE_S3_BUCKET"].append(bucket)
    c["SIMTRACE_S3_PREFIX"].append(opp)
    c["METRICS_S3_BUCKET"].append(bucket)
    opp_metrics = g("DR_EVAL_OPP_S3_METRICS_PREFIX", f"{opp}/metrics")
    c["METRICS_S3_OBJECT_KEY"].append(f"{opp_metrics}/EvaluationMetrics-{round(now)}.json")
    if _true(g("DR_EVAL_SAVE_MP4", "False")):
        c["MP4_S3_BUCKET"].append(bucket)
        c["MP4_S3_OBJECT_PREFIX"].append(f"{g('DR_EVAL_OPP_MODEL_PREFIX', 'bucket')}/mp4")
    c["DISPLAY_NAME"].append(g("DR_EVAL_OPP_DISPLAY_NAME", "racer1"))
    c["RACER_NAME"].append(g("DR_EVAL_OPP_RACER_NAME", "racer1"))
    c["BODY_SHELL_TYPE"].append(g("DR_EVAL_OPP_CAR_BODY_SHELL_TYPE", "deepracer"))
    c["VIDEO_JOB_TYPE"] = "EVALUATION"
    c["CAR_COLOR"] = ["Purple", "Orange"]
    c["MODEL_NAME"] = c["DISPLAY_NAME"]


def metrics_key(cfg: TrainingConfig, now: float) -> str:
    """Where the simapp writes the evaluation's metrics (the first car's)."""
    prefix = cfg.values.get("DR_LOCAL_S3_METRICS_PREFIX")
    if prefix is not None:
        return f"{prefix}/evaluation/evaluation-{stamp(now)}.json"
    return f"DeepRacer-Metrics/EvaluationMetrics-{stamp(now)}.json"


def _true(v: str) -> bool:
    return v.lower() in ("yes", "true", "t", "1")

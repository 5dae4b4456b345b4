"""The training params YAML, as DRfC's prepare-config.py writes it for the same env files:
the same keys, defaults and quoting, so training behaves exactly as before.

Deliberate differences (see docs/drfc-differences.md):
- each worker-k.env is layered on run.env alone (DRfC layers worker 3 on worker 2's values);
- a key a worker file leaves unset gets the single-config default (DRfC writes null);
- object-avoidance and head-to-bot keys appear only for that race type (DRfC leaks some,
  e.g. PENALTY_SECONDS and OBSTACLE_TYPE, into later workers of another race type).
"""

from __future__ import annotations

import os
import time
from typing import Any

import yaml

from drfleet.drfc.config import TrainingConfig

OA = "OBJECT_AVOIDANCE"
H2B = "HEAD_TO_BOT"


def params_name(cfg: TrainingConfig) -> str:
    return cfg.get("DR_LOCAL_S3_TRAINING_PARAMS_FILE", "training_params.yaml")


def minio_url(values: dict[str, str]) -> str | None:
    """DR_MINIO_URL as activate.sh sets it: the S3 endpoint the containers use, or None (aws)."""
    cloud = values.get("DR_CLOUD", "local").lower()
    if cloud in ("local", "azure"):
        return "http://minio:9000"
    if cloud == "remote":
        return values.get("DR_REMOTE_MINIO_URL", "")
    return None


def base(values: dict[str, str], workers: int, now: float) -> dict[str, Any]:
    g = values.get
    stamp = time.strftime("%Y%m%d%H%M%S", time.localtime(now))
    metrics = g("DR_LOCAL_S3_METRICS_PREFIX")
    c: dict[str, Any] = {
        "AWS_REGION": g("DR_AWS_APP_REGION", "us-east-1"),
        "JOB_TYPE": "TRAINING",
        "KINESIS_VIDEO_STREAM_NAME": g("DR_KINESIS_STREAM_NAME", ""),
        "METRICS_S3_BUCKET": g("DR_LOCAL_S3_BUCKET", "bucket"),
        "METRICS_S3_OBJECT_KEY": f"{metrics}/TrainingMetrics.json"
        if metrics is not None
        else f"DeepRacer-Metrics/TrainingMetrics-{stamp}.json",
        "MODEL_METADATA_FILE_S3_KEY": g(
            "DR_LOCAL_S3_MODEL_METADATA_KEY", "custom_files/model_metadata.json"
        ),
        "REWARD_FILE_S3_KEY": g("DR_LOCAL_S3_REWARD_KEY", "custom_files/reward_function.py"),
        "ROBOMAKER_SIMULATION_JOB_ACCOUNT_ID": "Dummy",
        "NUM_WORKERS": str(workers),
        "SAGEMAKER_SHARED_S3_BUCKET": g("DR_LOCAL_S3_BUCKET", "bucket"),
        "SAGEMAKER_SHARED_S3_PREFIX": g("DR_LOCAL_S3_MODEL_PREFIX", "rl-deepracer-sagemaker"),
        "SIMTRACE_S3_BUCKET": g("DR_LOCAL_S3_BUCKET", "bucket"),
        "SIMTRACE_S3_PREFIX": g("DR_LOCAL_S3_MODEL_PREFIX", "rl-deepracer-sagemaker"),
        "TRAINING_JOB_ARN": "arn:Dummy",
        "CAR_NAME": g("DR_CAR_NAME", "MyCar"),
        "DISPLAY_NAME": g("DR_DISPLAY_NAME", "racer1"),
        "RACER_NAME": g("DR_RACER_NAME", "racer1"),
        "MIN_EVAL_TRIALS": g("DR_TRAIN_MIN_EVAL_TRIALS", "5"),
        "BEST_MODEL_METRIC": g("DR_TRAIN_BEST_MODEL_METRIC", "progress"),
    }
    endpoint = minio_url(values)
    if endpoint is not None:
        c["S3_ENDPOINT_URL"] = endpoint
    c.update(per_worker(values))
    return c


# (params key, DR_* setting, default) that both prepare-config.py scripts (training's and
# upload's) write for object avoidance and head-to-bot
OA_SETTINGS = (
    ("NUMBER_OF_OBSTACLES", "DR_OA_NUMBER_OF_OBSTACLES", "6"),
    ("MIN_DISTANCE_BETWEEN_OBSTACLES", "DR_OA_MIN_DISTANCE_BETWEEN_OBSTACLES", "2.0"),
    ("RANDOMIZE_OBSTACLE_LOCATIONS", "DR_OA_RANDOMIZE_OBSTACLE_LOCATIONS", "True"),
    ("IS_OBSTACLE_BOT_CAR", "DR_OA_IS_OBSTACLE_BOT_CAR", "false"),
)
H2B_SETTINGS = (
    ("IS_LANE_CHANGE", "DR_H2B_IS_LANE_CHANGE", "False"),
    ("LOWER_LANE_CHANGE_TIME", "DR_H2B_LOWER_LANE_CHANGE_TIME", "3.0"),
    ("UPPER_LANE_CHANGE_TIME", "DR_H2B_UPPER_LANE_CHANGE_TIME", "5.0"),
    ("LANE_CHANGE_DISTANCE", "DR_H2B_LANE_CHANGE_DISTANCE", "1.0"),
    ("NUMBER_OF_BOT_CARS", "DR_H2B_NUMBER_OF_BOT_CARS", "0"),
    ("MIN_DISTANCE_BETWEEN_BOT_CARS", "DR_H2B_MIN_DISTANCE_BETWEEN_BOT_CARS", "2.0"),
    ("RANDOMIZE_BOT_CAR_LOCATIONS", "DR_H2B_RANDOMIZE_BOT_CAR_LOCATIONS", "False"),
    ("BOT_CAR_SPEED", "DR_H2B_BOT_CAR_SPEED", "0.2"),
)


def race_settings(
    values: dict[str, str], table: tuple[tuple[str, str, str], ...]
) -> dict[str, str]:
    return {key: values.get(setting, default) for key, setting, default in table}


def per_worker(values: dict[str, str]) -> dict[str, Any]:
    """The settings a worker-k.env may change, with DRfC's single-config defaults."""
    g = values.get
    c: dict[str, Any] = {
        "BODY_SHELL_TYPE": g("DR_CAR_BODY_SHELL_TYPE", "deepracer"),
        "CAR_COLOR": g("DR_CAR_COLOR", "Red"),
        "RACE_TYPE": g("DR_RACE_TYPE", "TIME_TRIAL"),
        "WORLD_NAME": g("DR_WORLD_NAME", "LGSWide"),
        # DRfC's default here is the boolean False, not a string; kept for identical output
        "REVERSE_DIR": g("DR_TRAIN_REVERSE_DIRECTION", False),
        "ALTERNATE_DRIVING_DIRECTION": g(
            "DR_TRAIN_ALTERNATE_DRIVING_DIRECTION", g("DR_ALTERNATE_DRIVING_DIRECTION", "false")
        ),
        "CHANGE_START_POSITION": g(
            "DR_TRAIN_CHANGE_START_POSITION", g("DR_CHANGE_START_POSITION", "true")
        ),
        "ROUND_ROBIN_ADVANCE_DIST": g("DR_TRAIN_ROUND_ROBIN_ADVANCE_DIST", "0.05"),
        "START_POSITION_OFFSET": g("DR_TRAIN_START_POSITION_OFFSET", "0.00"),
        "ENABLE_DOMAIN_RANDOMIZATION": g("DR_ENABLE_DOMAIN_RANDOMIZATION", "false"),
        "CAMERA_MAIN_ENABLE": g("DR_CAMERA_MAIN_ENABLE", "True"),
        "CAMERA_SUB_ENABLE": g("DR_CAMERA_SUB_ENABLE", "True"),
        "ENABLE_EXTRA_KVS_OVERLAY": g("DR_ENABLE_EXTRA_KVS_OVERLAY", "False"),
    }
    if c["RACE_TYPE"] == OA:
        c.update(race_settings(values, OA_SETTINGS))
        c["OBSTACLE_TYPE"] = g("DR_OA_OBSTACLE_TYPE", "box_obstacle")
        positions = g("DR_OA_OBJECT_POSITIONS", "").replace('"', "")
        if positions:
            c["OBJECT_POSITIONS"] = positions.split(";")
            c["NUMBER_OF_OBSTACLES"] = str(len(c["OBJECT_POSITIONS"]))
    if c["RACE_TYPE"] == H2B:
        c.update(race_settings(values, H2B_SETTINGS))
        c["PENALTY_SECONDS"] = g("DR_H2B_BOT_CAR_PENALTY", "2.0")
    return c


def files(cfg: TrainingConfig, now: float | None = None) -> dict[str, dict[str, Any]]:
    """File name (relative to the model prefix) -> its params: `training_params.yaml`, or one
    `training_params_<k>.yaml` per worker in multi-config."""
    now = time.time() if now is None else now
    name = params_name(cfg)
    first = base(cfg.values, cfg.workers, now)
    if not cfg.multi_config:
        return {name: first}
    stem = name.split(".")[0]
    out = {f"{stem}_1.yaml": first}
    for k in range(2, cfg.workers + 1):
        worker = {key: v for key, v in first.items() if key not in _RACE_KEYS}
        worker.update(per_worker(cfg.worker_values(k)))
        worker["MULTI_CONFIG"] = "True"  # DRfC's files for workers 2..N carry it too
        out[f"{stem}_{k}.yaml"] = worker
    return out


_RACE_KEYS = frozenset(
    {
        "NUMBER_OF_OBSTACLES",
        "MIN_DISTANCE_BETWEEN_OBSTACLES",
        "RANDOMIZE_OBSTACLE_LOCATIONS",
        "IS_OBSTACLE_BOT_CAR",
        "OBSTACLE_TYPE",
        "OBJECT_POSITIONS",
        "IS_LANE_CHANGE",
        "LOWER_LANE_CHANGE_TIME",
        "UPPER_LANE_CHANGE_TIME",
        "LANE_CHANGE_DISTANCE",
        "NUMBER_OF_BOT_CARS",
        "MIN_DISTANCE_BETWEEN_BOT_CARS",
        "RANDOMIZE_BOT_CAR_LOCATIONS",
        "BOT_CAR_SPEED",
        "PENALTY_SECONDS",
    }
)


def multi_config(params: dict[str, dict[str, Any]]) -> str:
    """The MULTI_CONFIG env every robomaker gets (empty without multi-config)."""
    if len(params) < 2:
        return ""
    import json

    entries = [{"config_file": n, "world_name": p["WORLD_NAME"]} for n, p in params.items()]
    return json.dumps({"multi_config": entries})


def dump(params: dict[str, Any]) -> str:
    """As DRfC writes it: block style, every scalar single-quoted, keys sorted, `---` first."""
    return yaml.dump(params, default_flow_style=False, default_style="'", explicit_start=True)


def s3_key(cfg: TrainingConfig, name: str) -> str:
    return os.path.normpath(
        os.path.join(cfg.get("DR_LOCAL_S3_MODEL_PREFIX", "rl-deepracer-sagemaker"), name)
    )

"""What `upload-model` and `car-model` copy, decided from a listing of the model's prefix and
its deepracer_checkpoints.json: DRfC's scripts/upload/upload-model.sh, prepare-config.py and
upload-car.sh, as pure functions. The copying is in models.py."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from drfleet.drfc import params
from drfleet.errors import DrfleetError

INDEX = "model/deepracer_checkpoints.json"


@dataclass(frozen=True)
class Source:
    """Where the model is read from: DRfC's SOURCE_S3_* (with -p, all under that prefix)."""

    prefix: str
    reward_key: str
    metrics_prefix: str

    @staticmethod
    def of(values: dict[str, str], prefix: str | None) -> Source:
        if prefix:
            return Source(prefix, f"{prefix}/reward_function.py", f"{prefix}/metrics")
        return Source(
            values.get("DR_LOCAL_S3_MODEL_PREFIX", "rl-deepracer-sagemaker"),
            values.get("DR_LOCAL_S3_REWARD_KEY", "custom_files/reward_function.py"),
            values.get("DR_LOCAL_S3_METRICS_PREFIX", "rl-deepracer-sagemaker/metrics"),
        )


@dataclass(frozen=True)
class Checkpoint:
    name: str  # N_Step-S.ckpt
    number: int
    index: dict[str, Any]  # the deepracer_checkpoints.json the target gets


def checkpoint(
    names: list[str], index: dict[str, Any] | None, which: str, now: float
) -> Checkpoint:
    """The checkpoint to copy: `which` is "last" (DRfC's default), "best" (-b) or a number
    (-c N). names are the file names under model/. The target's deepracer_checkpoints.json
    names it as both best and last, as DRfC writes it."""
    if which.isascii() and which.isdigit():
        pattern = re.compile(rf"^({int(which)}_Step-[0-9]{{1,7}}\.ckpt)\.index\Z")
        found = [m.group(1) for m in map(pattern.match, names) if m]
        if not found:
            raise DrfleetError(
                f"no checkpoint {which} under model/ (its .index file)",
                fix="pick one the prefix holds: drfleet download-model lists them all",
            )
        part = {"name": found[0], "time_stamp": int(now), "avg_comp_pct": 50.0}
        return Checkpoint(found[0], int(which), {"last_checkpoint": part, "best_checkpoint": part})
    if index is None:
        raise DrfleetError(
            f"no {INDEX}: the model has no checkpoint yet",
            fix="train until the first iteration ends, or name the prefix with --prefix",
        )
    entry = index.get(f"{which}_checkpoint") or {}
    name = entry.get("name") if isinstance(entry, dict) else None
    if not isinstance(name, str) or not re.match(r"^[0-9]+_", name):
        raise DrfleetError(f"{INDEX} names no {which} checkpoint", fix="try --checkpoint last")
    number = int(name.split("_", 1)[0])
    return Checkpoint(name, number, {"last_checkpoint": entry, "best_checkpoint": entry})


def model_files(names: list[str], ckpt: Checkpoint) -> list[str]:
    """The files of model/ that belong to the checkpoint: its N_Step-* files and model_N.pb.
    (DRfC's `--include "N*"` also takes checkpoints 10-19 along with 1: drfleet does not.)"""
    own = [
        n for n in names if n.startswith(f"{ckpt.number}_Step-") or n == f"model_{ckpt.number}.pb"
    ]
    if not any(n.endswith(".index") for n in own):
        raise DrfleetError(
            f"the files of checkpoint {ckpt.name} are gone from model/ (the trainer keeps the "
            "last four and the best)",
            fix="pick another: --checkpoint last, --checkpoint best or a number it holds",
        )
    return sorted(own)


def missing_metadata(found: dict[str, bool]) -> list[str]:
    """DRfC stops with "Meta-data files are not found" unless all four exist; drfleet names
    the ones missing."""
    return [name for name, ok in found.items() if not ok]


# the keys that say where the uploaded model lies: prepare-config.py reads them from
# TARGET_S3_BUCKET / TARGET_S3_PREFIX, which upload-model.sh never exports (so DRfC writes its
# defaults, `bucket` and `rl-deepracer-sagemaker`); drfleet writes the target's own names
TARGET_KEYS = (
    "METRICS_S3_BUCKET",
    "METRICS_S3_OBJECT_KEY",
    "MODEL_METADATA_FILE_S3_KEY",
    "REWARD_FILE_S3_KEY",
    "SAGEMAKER_SHARED_S3_BUCKET",
    "SAGEMAKER_SHARED_S3_PREFIX",
)


def target_values(bucket: str, prefix: str) -> dict[str, str]:
    """TARGET_KEYS' values for a model that lies at s3://bucket/prefix/."""
    return {
        "METRICS_S3_BUCKET": bucket,
        "METRICS_S3_OBJECT_KEY": f"{prefix}/TrainingMetrics.json",
        "MODEL_METADATA_FILE_S3_KEY": f"{prefix}/model/model_metadata.json",
        "REWARD_FILE_S3_KEY": f"{prefix}/reward_function.py",
        "SAGEMAKER_SHARED_S3_BUCKET": bucket,
        "SAGEMAKER_SHARED_S3_PREFIX": prefix,
    }


def training_params(values: dict[str, str], bucket: str, prefix: str) -> str:
    """scripts/upload/prepare-config.py: the training_params.yaml the console imports, the
    TARGET_KEYS naming bucket and prefix (docs/drfc-differences.md)."""
    g = values.get
    c: dict[str, Any] = {
        "AWS_REGION": g("DR_AWS_APP_REGION", "us-east-1"),
        "JOB_TYPE": "TRAINING",
        **target_values(bucket, prefix),
        "BODY_SHELL_TYPE": g("DR_CAR_BODY_SHELL_TYPE", "deepracer"),
    }
    if c["BODY_SHELL_TYPE"] == "deepracer":
        c["CAR_COLOR"] = g("DR_CAR_COLOR", "Red")
    c["CAR_NAME"] = g("DR_CAR_NAME", "MyCar")
    c["RACE_TYPE"] = g("DR_RACE_TYPE", "TIME_TRIAL")
    c["WORLD_NAME"] = g("DR_WORLD_NAME", "LGSWide")
    c["DISPLAY_NAME"] = g("DR_DISPLAY_NAME", "racer1")
    c["RACER_NAME"] = g("DR_RACER_NAME", "racer1")
    c["ALTERNATE_DRIVING_DIRECTION"] = g(
        "DR_TRAIN_ALTERNATE_DRIVING_DIRECTION", g("DR_ALTERNATE_DRIVING_DIRECTION", "false")
    )
    c["CHANGE_START_POSITION"] = g(
        "DR_TRAIN_CHANGE_START_POSITION", g("DR_CHANGE_START_POSITION", "true")
    )
    c["ROUND_ROBIN_ADVANCE_DIST"] = g("DR_TRAIN_ROUND_ROBIN_ADVANCE_DIST", "0.05")
    c["START_POSITION_OFFSET"] = g("DR_TRAIN_START_POSITION_OFFSET", "0.00")
    c["ENABLE_DOMAIN_RANDOMIZATION"] = g("DR_ENABLE_DOMAIN_RANDOMIZATION", "false")
    c["MIN_EVAL_TRIALS"] = g("DR_TRAIN_MIN_EVAL_TRIALS", "5")
    if c["RACE_TYPE"] == params.OA:
        c.update(params.race_settings(values, params.OA_SETTINGS))
        positions = g("DR_OA_OBJECT_POSITIONS", "")  # quotes kept, unlike training's
        if positions != "":
            c["OBJECT_POSITIONS"] = positions.split(";")
            c["NUMBER_OF_OBSTACLES"] = str(len(c["OBJECT_POSITIONS"]))
    if c["RACE_TYPE"] == params.H2B:
        c.update(params.race_settings(values, params.H2B_SETTINGS))
    return params.dump(c)


def console_objects(
    src: Source, target: str, ckpt: Checkpoint, files: list[str], metrics: list[str]
) -> list[tuple[str | None, str]]:
    """(source key or None for a written file, target key), in the order DRfC copies them:
    model/ (the checkpoint's files, model_metadata.json, .coach_checkpoint,
    deepracer_checkpoints.json), reward_function.py, metrics/, training_params.yaml,
    ip/hyperparameters.json, and model_metadata.json at the top."""
    out: list[tuple[str | None, str]] = [
        (f"{src.prefix}/model/{n}", f"{target}/model/{n}") for n in files
    ]
    out += [
        (f"{src.prefix}/model/model_metadata.json", f"{target}/model/model_metadata.json"),
        (None, f"{target}/model/.coach_checkpoint"),
        (None, f"{target}/{INDEX}"),
        (src.reward_key, f"{target}/reward_function.py"),
    ]
    out += [(k, f"{target}/metrics/{k[len(src.metrics_prefix) + 1 :]}") for k in sorted(metrics)]
    out += [
        (None, f"{target}/training_params.yaml"),
        (f"{src.prefix}/ip/hyperparameters.json", f"{target}/ip/hyperparameters.json"),
        (f"{src.prefix}/model/model_metadata.json", f"{target}/model_metadata.json"),
    ]
    return out


def written(ckpt: Checkpoint, values: dict[str, str], bucket: str, target: str) -> dict[str, bytes]:
    """The bodies of the files upload-model writes rather than copies."""
    return {
        f"{target}/model/.coach_checkpoint": (ckpt.name + "\n").encode(),
        f"{target}/{INDEX}": (json.dumps(ckpt.index) + "\n").encode(),
        f"{target}/training_params.yaml": training_params(values, bucket, target).encode(),
    }


def car_entries(ckpt: Checkpoint) -> dict[str, str]:
    """tar member -> file under model/: what a physical car loads (DRfC tars the trainer's
    /opt/ml/model: the frozen graph of the best checkpoint as agent/model.pb, beside
    model_metadata.json)."""
    return {
        "agent/model.pb": f"model_{ckpt.number}.pb",
        "model_metadata.json": "model_metadata.json",
    }

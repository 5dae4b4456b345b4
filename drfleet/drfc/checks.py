"""The rules of multi-worker training, as a user would want them told (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

from drfleet.drfc.config import TrainingConfig
from drfleet.errors import ConfigError
from drfleet.names import Run

# Values the simapp puts into code. download_params_and_roslaunch_agent.py joins the car colors
# and body shells into a `ros2 launch ...` line run with shell=True, and empty_world.launch.py
# evaluates `"<world_name>" + ".world"` as a Python expression (deepracer-simapp 01f5f015), so
# anything but a plain name would run inside the robomaker. The names the simapp accepts are
# markov/rollout_constants.py's CarColorType and BodyShellType.
CAR_COLORS = frozenset(
    ["Black", "Grey", "Blue", "Red", "Orange", "White", "Purple"]
    + [
        f"f1_car_{c}"
        for c in [
            "1e73fc",
            "7102bb",
            "cf15fc",
            "eb0000",
            "ff9900",
            "fffe01",
            "9efc03",
            "1bd900",
            "73fdf9",
        ]
    ]
)
BODY_SHELLS = frozenset(["deepracer", "f1_2021"] + [f"f1_car_{n}" for n in range(11, 22)])
PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]+")

# MAX_MEMORY_STEPS defaults by network, as DRfC sets them
STEP_CAP = {"DEEP_CONVOLUTIONAL_NETWORK_SHALLOW": 10000, "DEEP_CONVOLUTIONAL_NETWORK": 3000}


@dataclass
class Advice:
    shares: list[int]  # episodes per iteration, by worker index (slot - 1)
    max_steps: int
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def shares(episodes: int, workers: int) -> list[int]:
    """Worker idx runs E // N episodes, plus one if idx < E % N."""
    return [episodes // workers + (1 if idx < episodes % workers else 0) for idx in range(workers)]


def storage(cfg: TrainingConfig) -> None:
    """DR_CLOUD as activate.sh reads it: local and azure (minio on the trainer), remote (the
    S3 API at DR_REMOTE_MINIO_URL), aws (a bucket in the user's account); anything else is
    refused, as activate.sh would start no S3 at all for it."""
    if cfg.storage == "remote":
        url = cfg.get("DR_REMOTE_MINIO_URL")
        if remote_url_problem(url):
            raise ConfigError(
                f"DR_CLOUD=remote needs DR_REMOTE_MINIO_URL, the S3 API every host and this "
                f"machine reach: {remote_url_problem(url)}",
                where=cfg.where("DR_REMOTE_MINIO_URL"),
                fix="DR_REMOTE_MINIO_URL=http://<host>:9000 in system.env",
            )
        return
    if cfg.storage not in ("local", "aws"):
        raise ConfigError(
            f"DR_CLOUD={cfg.get('DR_CLOUD')} is not one DRfC knows: local (or azure, which "
            "DRfC treats the same: minio on the trainer), remote (DR_REMOTE_MINIO_URL) or aws "
            "(DR_LOCAL_S3_BUCKET in your AWS account)",
            where=cfg.where("DR_CLOUD"),
            fix="set DR_CLOUD=local, remote or aws in system.env",
        )


def remote_url_problem(url: str) -> str | None:
    from urllib.parse import urlsplit

    if not url:
        return "it is not set"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as exc:
        return f"{url!r} is not a URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s)://host[:port] URL"
    if parts.path not in ("", "/") or parts.query or parts.username:
        return f"{url!r} holds more than scheme, host and port"
    if any(c in url for c in " '\"`$;"):
        return f"{url!r} holds characters a URL should not"
    return None


MAX_RUN_ID = 99


def run(cfg: TrainingConfig) -> Run:
    """DR_RUN_ID, the run's names and ports (names.Run). activate.sh adds it to port numbers
    (`expr 8080 + $DR_RUN_ID`), so it is a whole number there too; drfleet takes 0..99 and
    keeps each run's ports 100 apart (docs/drfc-differences.md)."""
    raw = cfg.setting("DR_RUN_ID").strip() or "0"
    if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_RUN_ID:
        raise ConfigError(
            f"DR_RUN_ID={raw!r} is not a run number from 0 to {MAX_RUN_ID}",
            where=cfg.where("DR_RUN_ID"),
            fix="give each experiment on the fleet its own small number: DR_RUN_ID=0, 1, 2 ...",
        )
    return Run(str(int(raw)))


def check(cfg: TrainingConfig) -> Advice:
    e, n = cfg.episodes, cfg.workers
    hyper = str(cfg.custom_dir / "hyperparameters.json")
    storage(cfg)
    run(cfg)
    if n > e:
        raise ConfigError(
            f"{n} workers but num_episodes_between_training is {e}: a worker beyond the "
            f"{e}th would have no episode to run",
            where=hyper,
            fix=f"use at most {e} workers (DR_WORKERS), or raise num_episodes_between_training "
            f"to {n} or more",
        )
    s3_keys(cfg)
    advice = Advice(shares(e, n), max_steps(cfg), warnings=[*cfg.warnings, *simapp_names(cfg)])
    for slot in range(1, n + 1):
        values = cfg.worker_values(slot)
        raw = values.get("DR_TRAIN_ROUND_ROBIN_ADVANCE_DIST", "0.05")
        try:
            dist = Fraction(raw)
        except ValueError:
            raise ConfigError(
                f"DR_TRAIN_ROUND_ROBIN_ADVANCE_DIST={raw!r} is not a number",
                where=cfg.run.where("DR_TRAIN_ROUND_ROBIN_ADVANCE_DIST"),
            ) from None
        covered = Fraction(e, n) * dist
        if covered != 1 and (slot == 1 or slot in cfg.worker_files):
            who = "every worker" if not cfg.multi_config else f"worker {slot}"
            advice.warnings.append(
                f"{who} covers {float(covered):.2f} of the track per iteration "
                f"({e} episodes / {n} workers x advance {raw}); for exactly one lap set "
                f"DR_TRAIN_ROUND_ROBIN_ADVANCE_DIST={_num(Fraction(n, e))}"
                + _episodes_hint(n, dist)
            )
            if not cfg.multi_config:
                break
    cap = advice.max_steps
    lo, hi = cap // 1000, cap // 600
    advice.notes.append(
        f"MAX_MEMORY_STEPS is {cap}: on long tracks (600-1000 steps per completed episode) "
        f"about {lo}-{hi} complete episodes fit in one iteration"
    )
    if e > hi:
        advice.warnings.append(
            f"num_episodes_between_training={e} exceeds the {hi} complete episodes that fit in "
            f"MAX_MEMORY_STEPS={cap} on a long track: the trainer stops collecting first, so "
            f"more than about {min(n, hi)} workers gain little; consider {hi} episodes or fewer, "
            "or a higher DR_TRAIN_MAX_STEPS_PER_ITERATION"
        )
    return advice


# The settings that name S3 keys or prefixes. train uploads under them and `train --dry-run`
# writes files named by them, so each must be a plain relative key: anything else could
# reach outside the model's prefix in S3 or outside --out on disk.
S3_KEYS = (
    "DR_LOCAL_S3_MODEL_PREFIX",
    "DR_LOCAL_S3_CUSTOM_FILES_PREFIX",
    "DR_LOCAL_S3_TRAINING_PARAMS_FILE",
    "DR_LOCAL_S3_MODEL_METADATA_KEY",
    "DR_LOCAL_S3_HYPERPARAMETERS_KEY",
    "DR_LOCAL_S3_REWARD_KEY",
    "DR_LOCAL_S3_METRICS_PREFIX",
    "DR_LOCAL_S3_PRETRAINED_PREFIX",
)


def s3_key_problem(value: str) -> str:
    """Why value is not a plain relative S3 key, or "" when it is."""
    if not value:
        return "is empty"
    if value.startswith("/"):
        return "starts with /"
    if any(part in ("..", ".") for part in value.split("/")):
        return "has a . or .. segment"
    if any(ord(c) < 32 or c == "\x7f" for c in value):
        return "has a control character"
    if "//" in value or value.endswith("/"):
        return "has an empty segment"
    if len(value.encode()) > 900:
        return "is longer than S3 allows for a key with its file names"
    return ""


def s3_keys(cfg: TrainingConfig) -> None:
    for key in S3_KEYS:
        value = cfg.setting(key)
        problem = s3_key_problem(value)
        if problem:
            raise ConfigError(
                f"{key}={value!r} {problem}: it names S3 keys, which must be relative paths "
                "inside the bucket",
                where=cfg.where(key),
                fix="use a plain key like rl-deepracer-sagemaker (letters, digits, - _ . and /)",
            )


def simapp_names(cfg: TrainingConfig) -> list[str]:
    """Every worker's world, car color and body shell must be a plain name, never text the
    simapp would run (see CAR_COLORS); a plain name the simapp does not know is a warning."""
    out: list[str] = []
    for slot in range(1, cfg.workers + 1):
        values = cfg.worker_values(slot)
        file = cfg.worker_files.get(slot)
        for key, known in (
            ("DR_WORLD_NAME", None),
            ("DR_CAR_COLOR", CAR_COLORS),
            ("DR_CAR_BODY_SHELL_TYPE", BODY_SHELLS),
        ):
            value = values.get(key, cfg.setting(key))
            where = file.where(key) if file and key in file.values else cfg.where(key)
            if not PLAIN_NAME.fullmatch(value):
                raise ConfigError(
                    f"{key}={value!r} is not a plain name: the simapp would run it as code "
                    "(in a shell line or a Python expression) inside the robomaker",
                    where=where,
                    fix="use a name of letters, digits, _ . and - only",
                )
            if known is not None and value not in known:
                msg = (
                    f"{where}: {key}={value} is not a name the simapp knows "
                    f"({', '.join(sorted(known))})"
                )
                if msg not in out:
                    out.append(msg)
    return out


def max_steps(cfg: TrainingConfig) -> int:
    raw = cfg.get("DR_TRAIN_MAX_STEPS_PER_ITERATION").strip()
    if raw:
        try:
            return int(raw)
        except ValueError:
            where = cfg.run if "DR_TRAIN_MAX_STEPS_PER_ITERATION" in cfg.run.values else cfg.system
            raise ConfigError(
                f"DR_TRAIN_MAX_STEPS_PER_ITERATION={raw!r} is not a whole number",
                where=where.where("DR_TRAIN_MAX_STEPS_PER_ITERATION"),
            ) from None
    network = str(cfg.model_metadata.get("neural_network", "DEEP_CONVOLUTIONAL_NETWORK_SHALLOW"))
    return STEP_CAP.get(network, 10000)


def _num(f: Fraction) -> str:
    return f"{float(f):g}"


def _episodes_hint(n: int, dist: Fraction) -> str:
    per_worker = 1 / dist
    if per_worker.denominator == 1:
        return (
            f", or keep {_num(dist)} with num_episodes_between_training="
            f"{n * per_worker.numerator} ({n} workers x {per_worker.numerator})"
        )
    return ""

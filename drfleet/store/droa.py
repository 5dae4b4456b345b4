"""DeepRacer on AWS (DRoA), decided: its site's env.js read, the login's cache file, a model
import's layout and training_params.yaml, and what each droa-* command prints. Pure: DRfC's
scripts/droa/*.py (2eb1a1f) as functions; the requests are in droa_client.py."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import yaml

from drfleet.errors import DrfleetError
from drfleet.store import console

ASSET_TYPES = ("TRAINING_LOGS", "EVALUATION_LOGS", "PHYSICAL_CAR_MODEL", "VIRTUAL_MODEL", "VIDEOS")
DELETABLE = ("READY", "ERROR")  # deleteModel.ts: any other status is refused
URL_FIX = "set DR_DROA_URL in system.env to your DRoA site's address (or pass --url)"


@dataclass(frozen=True)
class Site:
    """What auth.py's load_droa_config resolves from <url>/env.js."""

    url: str
    region: str
    user_pool_id: str
    client_id: str
    identity_pool_id: str
    api: str  # apiEndpointUrl, without its trailing /
    upload_bucket: str


_KEYS = (
    ("region", "region"),
    ("userPoolId", "user_pool_id"),
    ("userPoolClientId", "client_id"),
    ("identityPoolId", "identity_pool_id"),
    ("apiEndpointUrl", "api"),
    ("uploadBucketName", "upload_bucket"),
)


def site(url: str, text: str) -> Site:
    """The site's `window.EnvironmentConfig = {...};` (website.ts writes it as JSON; a JS
    literal is read as auth.py reads it). A page without it is what CloudFront answers for a
    wrong address: it names the URL."""
    found = re.search(r"window\.EnvironmentConfig\s*=\s*(\{.+\})\s*;", text, re.DOTALL)
    where = f"{url.rstrip('/')}/env.js"
    if not found:
        raise DrfleetError("no EnvironmentConfig there: not a DRoA site", where=where, fix=URL_FIX)
    raw = found.group(1)
    try:
        env = json.loads(raw)
    except json.JSONDecodeError:
        js = re.sub(r"([{,]\s*)([A-Za-z_]\w*)\s*:", r'\1"\2":', raw)
        js = re.sub(r"'([^']*)'", r'"\1"', js)
        try:
            env = json.loads(re.sub(r",(\s*})", r"\1", js))
        except json.JSONDecodeError as e:
            raise DrfleetError(f"its EnvironmentConfig is not readable ({e})", where=where) from e
    missing = [k for k, _ in _KEYS if not isinstance(env.get(k), str) or not env.get(k)]
    if missing:
        raise DrfleetError(f"EnvironmentConfig lacks {', '.join(missing)}", where=where)
    values = {field: env[k] for k, field in _KEYS}
    values["api"] = values["api"].rstrip("/")
    return Site(url=url.rstrip("/"), **values)


@dataclass(frozen=True)
class Credentials:
    """The identity pool's temporary keys."""

    access_key: str
    secret_key: str
    session_token: str
    expiry: datetime


def cache_name(identity_pool_id: str, username: str) -> str:
    """auth.py's cache file name under ~/.droa-cache: DRfC and drfleet share one login."""
    return hashlib.sha256(f"{identity_pool_id}:{username}".encode()).hexdigest()[:16] + ".json"


def cached(text: str, now: datetime) -> Credentials | None:
    """The cached keys when they hold for more than 60 seconds more (auth.py's rule)."""
    try:
        data = json.loads(text)
        expiry = datetime.fromisoformat(data["expiry"])
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=timezone.utc)
        creds = Credentials(data["access_key"], data["secret_key"], data["session_token"], expiry)
    except (ValueError, KeyError, TypeError):
        return None
    return creds if expiry > now + timedelta(seconds=60) else None


def cache_text(creds: Credentials) -> str:
    """The cache file as auth.py writes it."""
    return json.dumps(
        {
            "access_key": creds.access_key,
            "secret_key": creds.secret_key,
            "session_token": creds.session_token,
            "expiry": creds.expiry.isoformat(),
        }
    )


# --- import ------------------------------------------------------------------------------

# REQUIRED_FILES_DIR of import_model.py; DRoA's ImportHelper reads hyperparameters under ip/
REQUIRED = ("model_metadata.json", "reward_function.py", "training_params.yaml")
HYPERPARAMETERS = ("hyperparameters.json", "ip/hyperparameters.json")
SKIPPED = {".DS_Store", "Thumbs.db", "desktop.ini", "._.DS_Store"}


def name_problem(name: str) -> str | None:
    """importModel.ts's validateRequest, said before anything is uploaded."""
    if not re.fullmatch(r"[a-zA-Z0-9-]+", name) or len(name) > 64:
        return "a DRoA model name is letters, digits and hyphens, 64 at most"
    return None


def description_problem(text: str) -> str | None:
    if not re.fullmatch(r"[a-zA-Z0-9- ]+", text) or len(text) > 255:
        return "a DRoA model description is letters, digits, spaces and hyphens, 255 at most"
    return None


def folder_problem(names: list[str]) -> str | None:
    """--model-dir: the files import_model.py requires at the folder's top."""
    missing = [n for n in REQUIRED if n not in names]
    if not any(h in names for h in HYPERPARAMETERS):
        missing.append("hyperparameters.json")
    if missing:
        return "missing required model files at its top: " + ", ".join(sorted(missing))
    return None


def uploaded(name: str) -> bool:
    """import_model.py's upload_model_folder skips these."""
    base = name.rsplit("/", 1)[-1]
    return base not in SKIPPED and not base.lower().endswith((".gz", ".zip"))


def clockwise(names: list[str], reverse: str) -> bool:
    """TRACK_DIRECTION_CLOCKWISE as import_model.py infers it: a name ending in _cw or _ccw
    (DR_WORLD_NAME first, then the file's WORLD_NAME) says it, else
    DR_TRAIN_REVERSE_DIRECTION."""
    if any(n.endswith("_cw") for n in names):
        return True
    if any(n.endswith("_ccw") for n in names):
        return False
    return reverse.lower() not in ("true", "1", "yes")


def training_params(
    found: str | None, values: dict[str, str], bucket: str, prefix: str
) -> tuple[str, list[str]]:
    """import_model.py's training_params.yaml: the run's own (found), else generated as
    prepare-config.py does; then the six keys that say where it lies point at the DRoA upload,
    WORLD_NAME loses its direction suffix and TRACK_DIRECTION_CLOCKWISE is added when absent.
    Returns the text and what was changed, for the command to say."""
    data: dict[str, Any] = yaml.safe_load(
        found if found is not None else console.training_params(values, bucket, prefix)
    )
    if not isinstance(data, dict):
        raise DrfleetError("the run's training_params.yaml is not a mapping")
    said = [] if found is not None else ["training_params.yaml generated from run.env"]
    data.update(console.target_values(bucket, prefix))
    world = str(data.get("WORLD_NAME", ""))
    clean = re.sub(r"_(cw|ccw)$", "", world)  # DRoA's trackId has no direction suffix
    if clean != world:
        data["WORLD_NAME"] = clean
        said.append(f"WORLD_NAME {world} -> {clean}")
    if "TRACK_DIRECTION_CLOCKWISE" not in data:
        names = [values.get("DR_WORLD_NAME", world), world]
        data["TRACK_DIRECTION_CLOCKWISE"] = clockwise(
            names, values.get("DR_TRAIN_REVERSE_DIRECTION", "False")
        )
        said.append(f"TRACK_DIRECTION_CLOCKWISE={data['TRACK_DIRECTION_CLOCKWISE']}")
    return yaml.dump(data, default_flow_style=False), said


def params_candidates(prefix: str) -> list[str]:
    """Where import_model.py looks for the run's params: worker 1's in multi-config first."""
    return [f"{prefix}/training_params_1.yaml", f"{prefix}/training_params.yaml"]


def import_layout(
    src: console.Source,
    ckpt: console.Checkpoint,
    files: list[str],
    metrics: list[str],
    stamp: int,
) -> list[tuple[str | None, str]]:
    """(key in the run's S3, or None for a file written here; path under the upload prefix):
    import_model.py's _build_from_s3_prefix. model_metadata.json at the top and under model/,
    ip/hyperparameters.json, reward_function.py, metrics/, the checkpoint's files with
    .coach_checkpoint and a deepracer_checkpoints.json naming it alone, training_params.yaml.
    One more than DRfC's: worker 1's metrics also as metrics/training/training-<stamp>.json,
    the one file DRoA's import takes a model's training metrics from
    (ImportHelper.parseMetrics), so its graph and droa-get-model --summary have them."""
    meta = f"{src.prefix}/model/model_metadata.json"
    out: list[tuple[str | None, str]] = [
        (meta, "model_metadata.json"),
        (meta, "model/model_metadata.json"),
        (f"{src.prefix}/ip/hyperparameters.json", "ip/hyperparameters.json"),
        (src.reward_key, "reward_function.py"),
    ]
    out += [(k, f"metrics/{k[len(src.metrics_prefix) + 1 :]}") for k in sorted(metrics)]
    first = f"{src.metrics_prefix}/TrainingMetrics.json"
    shown = (
        first
        if first in metrics
        else next(iter(sorted(m for m in metrics if m.endswith(".json"))), None)
    )
    if shown is not None:
        out.append((shown, f"metrics/training/training-{stamp}.json"))
    out += [(f"{src.prefix}/model/{n}", f"model/{n}") for n in files]
    out += [
        (None, "model/.coach_checkpoint"),
        (None, f"model/{console.INDEX.split('/', 1)[1]}"),
        (None, "training_params.yaml"),
    ]
    return out


def checkpoint_files(ckpt: console.Checkpoint) -> dict[str, bytes]:
    """What import_model.py writes: .coach_checkpoint (the name, no newline) and an index
    whose best and last are the chosen checkpoint."""
    entry = ckpt.index["last_checkpoint"]
    return {
        "model/.coach_checkpoint": ckpt.name.encode(),
        "model/deepracer_checkpoints.json": json.dumps(
            {"last_checkpoint": entry, "best_checkpoint": entry}
        ).encode(),
    }


# --- what the commands print -------------------------------------------------------------


def newest_first(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(models, key=lambda m: m.get("createdAt") or "", reverse=True)


def table(models: list[dict[str, Any]]) -> Iterator[str]:
    """list_models.py's table."""
    if not models:
        yield "No models found."
        return
    yield f"{'Model ID':<15}  {'Name':<40}  {'Status':<16}  {'Training':<16}  Created At"
    yield "-" * (15 + 40 + 16 + 16 + 30)
    for m in models:
        created = (m.get("createdAt") or "")[:19].replace("T", " ")
        yield (
            f"{m.get('modelId', ''):<15}  {m.get('name', ''):<40}  {m.get('status', ''):<16}  "
            f"{m.get('trainingStatus', ''):<16}  {created}"
        )


def _size(n: Any) -> str:
    if not isinstance(n, int):
        return ""
    for unit, limit in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= limit:
            return f"{n / limit:.1f} {unit}"
    return f"{n} B"


def _kv(key: str, value: Any, indent: int = 0) -> Iterator[str]:
    if value is not None and value != "":
        yield f"{'  ' * indent}{key:<22}: {value}"


def details(model: dict[str, Any], verbose: bool) -> Iterator[str]:
    """get_model.py's view: identity, car, training config, metadata; with verbose the action
    space, the reward function and the metrics URL."""
    yield from _kv("Model ID", model.get("modelId"))
    yield from _kv("Name", model.get("name"))
    yield from _kv("Description", model.get("description"))
    yield from _kv("Status", model.get("status"))
    yield from _kv("Training Status", model.get("trainingStatus"))
    yield from _kv("Created At", (model.get("createdAt") or "")[:19].replace("T", " "))
    yield from _kv("File Size", _size(model.get("fileSizeInBytes")))
    yield from _kv("Packaging Status", model.get("packagingStatus"))
    yield from _kv("Import Error", model.get("importErrorMessage"))
    car = model.get("carCustomization") or {}
    if car:
        yield ""
        yield "Car Customization"
        yield from _kv("Color", car.get("carColor"), 1)
        yield from _kv("Shell", car.get("carShell"), 1)
    tc = model.get("trainingConfig") or {}
    if tc:
        yield ""
        yield "Training Config"
        trk = tc.get("trackConfig") or {}
        yield from _kv("Track", trk.get("trackId"), 1)
        yield from _kv("Direction", trk.get("trackDirection"), 1)
        yield from _kv("Race Type", tc.get("raceType"), 1)
        yield from _kv("Max Time (min)", tc.get("maxTimeInMinutes"), 1)
    meta = model.get("metadata") or {}
    if meta:
        yield ""
        yield "Metadata"
        yield from _kv("Algorithm", meta.get("agentAlgorithm"), 1)
        sensors = meta.get("sensors") or {}
        yield from _kv("Camera", sensors.get("camera"), 1)
        yield from _kv("Lidar", sensors.get("lidar"), 1)
        hp = meta.get("hyperparameters") or {}
        if hp:
            yield "  Hyperparameters"
            for k, v in hp.items():
                yield from _kv(k, v, 2)
        if verbose:
            yield from _action_space(meta.get("actionSpace") or {})
            if meta.get("rewardFunction"):
                yield ""
                yield "Reward Function"
                yield from str(meta["rewardFunction"]).splitlines()
    if verbose and model.get("trainingMetricsUrl"):
        yield ""
        yield from _kv("Metrics URL", model["trainingMetricsUrl"])
    if model.get("trainingVideoStreamUrl"):
        yield ""
        yield from _kv("Video Stream URL", model["trainingVideoStreamUrl"])


def _action_space(space: dict[str, Any]) -> Iterator[str]:
    cont, disc = space.get("continous") or {}, space.get("discrete") or []  # DRoA's spelling
    if not (cont or disc):
        return
    yield ""
    yield "Action Space"
    if cont:
        yield from _kv("Type", "continuous", 1)
        yield from _kv("Speed range", f"{cont.get('lowSpeed')} – {cont.get('highSpeed')} m/s", 1)
        steer = f"{cont.get('lowSteeringAngle')}° – {cont.get('highSteeringAngle')}°"
        yield from _kv("Steering range", steer, 1)
        return
    yield from _kv("Type", f"discrete ({len(disc)} actions)", 1)
    for i, a in enumerate(disc):
        action = f"speed={a.get('speed')} m/s, steering={a.get('steeringAngle')}°"
        yield from _kv(f"Action {i}", action, 2)


def summary(metrics: dict[str, Any], share: int) -> Iterator[str]:
    """--summary: the mean reward and progress of the training episodes of each iteration
    (share: num_episodes_between_training, one worker's file), as deepracer-utils'
    TrainingMetrics.getSummary(method="mean") shows them, without pandas."""
    rows = [
        r
        for r in metrics.get("metrics", [])
        if isinstance(r, dict) and r.get("phase") == "training"
    ]
    if not rows:
        yield "no training episodes in the model's metrics"
        return
    share = max(share, 1)
    yield f"{'iteration':>9}  {'episodes':>8}  {'reward':>10}  {'progress':>8}"
    for start in range(0, len(rows), share):
        part = rows[start : start + share]
        reward = sum(float(r.get("reward_score", 0)) for r in part) / len(part)
        progress = sum(float(r.get("completion_percentage", 0)) for r in part) / len(part)
        yield f"{start // share:>9}  {len(part):>8}  {reward:>10.2f}  {progress:>8.1f}"

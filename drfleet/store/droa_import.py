"""droa-import-model's I/O: the files of a model gathered (from the run's S3 as DRfC's
import_model.py gathers them from minio, or from a folder), put in DRoA's upload bucket under
a new prefix with the login's keys, then POST /importmodel. The decisions are droa.py's."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drfleet.drfc import checks
from drfleet.errors import DrfleetError
from drfleet.progress import Meter
from drfleet.runs import storage
from drfleet.store import console, droa, models
from drfleet.store.results import DroaImported

Files = list[tuple[str, bytes]]  # (path under the upload prefix, body)


def from_run(
    s3: Any, cfg: Any, prefix: str | None, which: str, bucket: str, target: str
) -> tuple[Files, list[str], str]:
    """The checkpoint `which` of the model at prefix (default DR_LOCAL_S3_MODEL_PREFIX) and
    what goes with it, all read before anything is uploaded; what was changed in its
    training_params.yaml; the checkpoint's name."""
    keys = ("DR_LOCAL_S3_MODEL_PREFIX", "DR_LOCAL_S3_REWARD_KEY", "DR_LOCAL_S3_METRICS_PREFIX")
    values = {k: cfg.setting(k) for k in cfg.values} | {k: cfg.setting(k) for k in keys}
    local = cfg.setting("DR_LOCAL_S3_BUCKET")
    src = console.Source.of(values, prefix)
    ckpt, files = models.chosen(s3, local, src, which)
    src = models.with_reward(s3, local, src)
    metrics = [o["Key"] for o in storage.every(s3, local, src.metrics_prefix)]
    out: Files = []
    missing = []
    for key, rel in droa.import_layout(src, ckpt, files, metrics, int(time.time())):
        if key is None:
            continue
        body = storage.read(s3, local, key)
        if body is None:
            missing.append(f"s3://{local}/{key}")
            continue
        out.append((rel, body))
    if missing:
        raise DrfleetError(
            "the model is not all there (" + ", ".join(sorted(set(missing))) + "); nothing "
            "was uploaded",
            fix="import the model of a run whose trainer and first iteration ran",
        )
    found: str | None = None
    for key in droa.params_candidates(src.prefix):
        raw = storage.read(s3, local, key)
        if raw is not None:
            found = raw.decode()
            break
    text, said = droa.training_params(found, values, bucket, target)
    written = droa.checkpoint_files(ckpt)
    out += [(rel, body) for rel, body in written.items()]
    out.append(("training_params.yaml", text.encode()))
    return out, said, ckpt.name


def from_folder(folder: Path) -> Files:
    """Every file under folder that import_model.py uploads, its required files checked; a
    hyperparameters.json at the top is also put under ip/, where DRoA's import reads it
    (ImportHelper.parseHyperparameters), which DRfC's --model-dir leaves to the user."""
    if not folder.is_dir():
        raise DrfleetError("not a folder", where=str(folder))
    out: Files = []
    for p in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = p.relative_to(folder).as_posix()
        if not droa.uploaded(rel):
            continue
        problem = checks.s3_key_problem(rel)
        if problem:
            raise DrfleetError(f"its name makes no S3 key ({problem})", where=str(p))
        out.append((rel, p.read_bytes()))
    lacking = droa.folder_problem([rel for rel, _ in out])
    if lacking:
        raise DrfleetError(lacking, where=str(folder))
    names = dict(out)
    if "ip/hyperparameters.json" not in names:  # where DRoA's import reads it
        out.append(("ip/hyperparameters.json", names["hyperparameters.json"]))
    return out


CONTENT_TYPES = {  # import_model.py's _content_type
    ".meta": "application/octet-stream",
    ".ckpt": "application/octet-stream",
    ".pb": "application/octet-stream",
    ".ready": "text/plain",
    ".json": "application/json",
    ".yaml": "application/x-yaml",
    ".yml": "application/x-yaml",
    ".py": "text/x-python",
    ".data": "application/octet-stream",
    ".index": "application/octet-stream",
}


def content_type(rel: str) -> str:
    name = rel.rsplit("/", 1)[-1]
    if name == "done":
        return "text/plain"
    ext = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return CONTENT_TYPES.get(ext, "application/octet-stream")


def upload(
    session: Any,
    files: Files,
    target: str,
    name: str,
    description: str | None,
    tick: Callable[[str], None],
) -> DroaImported:
    """The files to s3://<upload bucket>/target/, then DRoA asked to import them."""
    bucket = session.site.upload_bucket
    s3 = session.s3()
    meter = Meter(sum(len(b) for _, b in files))
    for rel, body in files:
        s3.put_object(
            Bucket=bucket, Key=f"{target}/{rel}", Body=body, ContentType=content_type(rel)
        )
        meter.done += len(body)
        tick(meter.line())
    request = {"s3Bucket": bucket, "s3Path": target, "modelName": name}
    if description:
        request["modelDescription"] = description
    got = session.call("POST", "/importmodel", body=request)
    model_id = got.get("modelId")
    if not model_id:
        raise DrfleetError(f"DRoA's import answered without a modelId: {got}")
    return DroaImported(
        model_id, name, f"s3://{bucket}/{target}/", [r for r, _ in files], meter.done
    )

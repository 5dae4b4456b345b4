"""The model's way out and back in. `download-model` copies a model prefix of the run's S3 to
a folder here; `import-model` puts a folder under a new prefix (so a model trained elsewhere,
DRfC's included, continues here through DR_LOCAL_S3_PRETRAINED_PREFIX); `upload-model` copies a
checkpoint to the console's layout in another bucket; `car-model` builds a car's tar.gz. Each
works on an S3 client the command line gets from s3access.run_s3."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drfleet.drfc import checks
from drfleet.errors import DrfleetError
from drfleet.progress import Meter, metered
from drfleet.runs import storage
from drfleet.store import console
from drfleet.store.results import ConsoleUpload, ModelCopied, Transfer

Tick = Callable[[str], None]


MODEL_FIX = "name the model with --prefix (default: DR_LOCAL_S3_MODEL_PREFIX of run.env)"


def download(
    s3: Any, bucket: str, prefix: str, out: Path, tick: Tick, fix: str = MODEL_FIX
) -> Transfer:
    """Every object under prefix/ to out/<its key below prefix>; each file lands whole (a
    temporary name, then renamed), and nothing is written outside out."""
    found = storage.every(s3, bucket, prefix)
    if not found:
        raise DrfleetError(f"s3://{bucket}/{prefix}/ holds nothing", fix=fix)
    meter = Meter(sum(int(o["Size"]) for o in found))
    root = out.resolve()
    gone: list[str] = []
    for o in found:
        rel = o["Key"][len(prefix) + 1 :]
        if checks.s3_key_problem(rel):
            raise DrfleetError(f"s3://{bucket}/{o['Key']}: not a key a file can be made of")
        path = (root / rel).resolve()
        if not path.is_relative_to(root):
            raise DrfleetError(f"{o['Key']} would be written outside {out}", where=str(out))
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f".{path.name}.part")
        try:
            body = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"]
        except s3.exceptions.NoSuchKey:  # a training run deleted an old checkpoint meanwhile
            gone.append(o["Key"])
            continue
        with open(part, "wb") as fh:
            for chunk in metered(body.iter_chunks(1 << 20), meter, tick):
                fh.write(chunk)
        os.replace(part, path)
    return Transfer(prefix, str(out), len(found) - len(gone), meter.done, gone=gone)


def _files_under(src: Path, prefix: str) -> list[tuple[Path, str]]:
    """Every regular file under src (links skipped) with its key under prefix/, each key
    checked before anything is written."""
    if not src.is_dir():
        raise DrfleetError("not a folder", where=str(src))
    out = []
    for p in sorted(p for p in src.rglob("*") if p.is_file() and not p.is_symlink()):
        key = f"{prefix}/{p.relative_to(src).as_posix()}"
        problem = checks.s3_key_problem(key)
        if problem:
            raise DrfleetError(f"{p}: its name makes no S3 key ({problem})")
        out.append((p, key))
    return out


def upload(s3: Any, bucket: str, prefix: str, src: Path, wipe: bool, tick: Tick) -> Transfer:
    """Every file under src to prefix/<its path below src>. A prefix that holds objects is
    refused unless wipe (then they go first)."""
    problem = checks.s3_key_problem(prefix)
    if problem:
        raise DrfleetError(f"--prefix {prefix!r} {problem}", fix="use a plain key like my-model-2")
    files = _files_under(src, prefix)
    if not files:
        raise DrfleetError("the folder holds no files", where=str(src))
    storage.ensure_bucket(s3, bucket)
    existing = storage.listed(s3, bucket, prefix)
    if existing and not wipe:
        raise DrfleetError(
            f"s3://{bucket}/{prefix}/ already holds {len(existing)} objects; nothing was copied",
            fix="choose another --prefix, or --wipe to replace them",
        )
    storage.delete_prefix(s3, bucket, prefix, existing)
    meter = Meter(sum(p.stat().st_size for p, _ in files))
    for p, key in files:

        def count(n: int) -> None:
            meter.done += n
            tick(meter.line())

        with open(p, "rb") as fh:
            s3.upload_fileobj(fh, bucket, key, Callback=count)
    tick(meter.line())
    return Transfer(prefix, str(src), len(files), meter.done, into_s3=True)


def _names(s3: Any, bucket: str, prefix: str) -> list[str]:
    """Every key under prefix/, relative to it."""
    return [o["Key"][len(prefix) + 1 :] for o in storage.every(s3, bucket, prefix)]


def chosen(
    s3: Any, bucket: str, src: console.Source, which: str
) -> tuple[console.Checkpoint, list[str]]:
    """The checkpoint `which` names and its files under model/."""
    model = [n[len("model/") :] for n in _names(s3, bucket, src.prefix) if n.startswith("model/")]
    raw = storage.read(s3, bucket, f"{src.prefix}/{console.INDEX}")
    index = json.loads(raw) if raw is not None else None
    if raw is None and not model:
        raise DrfleetError(
            f"s3://{bucket}/{src.prefix}/model/ holds nothing",
            fix="name the model with --prefix (default: DR_LOCAL_S3_MODEL_PREFIX of run.env)",
        )
    ckpt = console.checkpoint(model, index, which, time.time())
    return ckpt, console.model_files(model, ckpt)


def with_reward(s3: Any, bucket: str, src: console.Source) -> console.Source:
    """The reward function the model's prefix holds, else the run's (DR_LOCAL_S3_REWARD_KEY):
    where upload-model.sh and import_model.py both look first."""
    own = f"{src.prefix}/reward_function.py"
    if storage.read(s3, bucket, own) is None:
        return src
    return console.Source(src.prefix, own, src.metrics_prefix)


def upload_model(
    s3: Any,
    bucket: str,
    src: console.Source,
    dst: Any,
    dst_bucket: str,
    target: str,
    which: str,
    values: dict[str, str],
    wipe: bool,
    dry_run: bool,
    tick: Tick,
    dst_setting: str = "DR_UPLOAD_S3_BUCKET",
) -> ConsoleUpload:
    """DRfC's upload-model.sh: the checkpoint with its metadata, reward function, metrics,
    hyperparameters and training_params.yaml under target/ in the console's layout. Everything
    is read and checked before the first write; with wipe, what target/model/ held besides goes
    (aws s3 sync --delete)."""
    ckpt, files = chosen(s3, bucket, src, which)
    src = with_reward(s3, bucket, src)
    metrics = [f"{src.metrics_prefix}/{n}" for n in _names(s3, bucket, src.metrics_prefix)]
    bodies: dict[str, bytes] = {}
    copies = console.console_objects(src, target, ckpt, files, metrics)
    for key in {k for k, _ in copies if k is not None}:
        body = storage.read(s3, bucket, key)
        if body is not None:
            bodies[key] = body
    missing = console.missing_metadata(
        {
            f"s3://{bucket}/{src.prefix}/model/model_metadata.json": (
                f"{src.prefix}/model/model_metadata.json" in bodies
            ),
            f"s3://{bucket}/{src.reward_key}": src.reward_key in bodies,
            f"s3://{bucket}/{src.prefix}/ip/hyperparameters.json": (
                f"{src.prefix}/ip/hyperparameters.json" in bodies
            ),
            f"s3://{bucket}/{src.metrics_prefix}/": bool(metrics),
        }
    )
    if missing:
        raise DrfleetError(
            "the model's metadata is not all there ("
            + ", ".join(missing)
            + "); nothing was copied",
            fix="upload the model of a run whose trainer and first iteration ran",
        )
    writes = console.written(ckpt, values, dst_bucket, target)
    result = ConsoleUpload(
        ckpt.name, f"s3://{dst_bucket}/{target}/", [t for _, t in copies], dry_run
    )
    if dry_run:
        return result
    storage.bucket_exists(dst, dst_bucket, dst_setting)
    meter = Meter(sum(len(bodies.get(k, b"")) if k else len(writes[t]) for k, t in copies))
    for k, t in copies:
        body = bodies[k] if k is not None else writes[t]
        dst.put_object(Bucket=dst_bucket, Key=t, Body=body)
        meter.done += len(body)
        tick(meter.line())
    if wipe:
        keep = {t for _, t in copies}
        stale = [
            f"{target}/{n}"
            for n in _names(dst, dst_bucket, target)
            if n.startswith("model/") and f"{target}/{n}" not in keep
        ]
        for i in range(0, len(stale), 1000):
            dst.delete_objects(
                Bucket=dst_bucket, Delete={"Objects": [{"Key": k} for k in stale[i : i + 1000]]}
            )
        result.deleted = stale
    return result


def car_model(
    s3: Any, bucket: str, src: console.Source, which: str
) -> tuple[bytes, console.Checkpoint]:
    """The tar.gz a physical car loads: agent/model.pb (the checkpoint's frozen graph) and
    model_metadata.json."""
    ckpt, _files = chosen(s3, bucket, src, which)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for member, name in console.car_entries(ckpt).items():
            body = storage.read(s3, bucket, f"{src.prefix}/model/{name}")
            if body is None:
                raise DrfleetError(f"s3://{bucket}/{src.prefix}/model/{name} is missing")
            info = tarfile.TarInfo(member)
            info.size, info.mtime, info.mode = len(body), int(time.time()), 0o644
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue(), ckpt


def upload_custom(s3: Any, bucket: str, prefix: str, src: Path, tick: Tick) -> Transfer:
    """DRfC's dr-upload-custom-files (`aws s3 sync custom_files/ s3://bucket/prefix/`): every
    file under src whose object differs or is missing is put; the others, and objects with no
    file here, stay. Returns what was put."""
    files = _files_under(src, prefix)
    storage.ensure_bucket(s3, bucket)
    changed: list[tuple[str, bytes]] = []
    for p, key in files:
        body = p.read_bytes()
        if storage.read(s3, bucket, key) != body:
            changed.append((key, body))
    meter = Meter(sum(len(b) for _, b in changed))
    for key, body in changed:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        meter.done += len(body)
        tick(meter.line())
    return Transfer(prefix, str(src), len(changed), meter.done, into_s3=True)


# what makes a model (DRfC's download-model.sh checks for these three before it copies)
MODEL_FILES = ("reward_function.py", "model/model_metadata.json", "ip/hyperparameters.json")


def s3_url(url: str) -> tuple[str, str]:
    """s3://bucket/prefix -> (bucket, prefix), or an error saying the form."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    if not url.startswith("s3://") or not bucket or not prefix or checks.s3_key_problem(prefix):
        raise DrfleetError(
            f"--source {url!r} is not a model's S3 URL", fix="e.g. --source s3://my-bucket/my-model"
        )
    return bucket, prefix


def copy_model_in(
    src: Any,
    url: str,
    s3: Any,
    bucket: str,
    target: str,
    wipe: bool,
    dry_run: bool,
    tick: Tick,
) -> tuple[ModelCopied, dict[str, bytes]]:
    """DRfC's download-model.sh: every object of the model at url (read with src) to
    target/ in the run's S3 (s3, bucket), after its three metadata files are found. A target
    that holds objects is refused unless wipe (then they go first). Returns the result and
    the metadata files' bodies (file name -> bytes), for custom_files/."""
    problem = checks.s3_key_problem(target)
    if problem:
        raise DrfleetError(f"--target {target!r} {problem}", fix="use a plain key like my-model-2")
    src_bucket, prefix = s3_url(url)
    found = storage.every(src, src_bucket, prefix)
    names = {o["Key"][len(prefix) + 1 :]: o for o in found}
    missing = [m for m in MODEL_FILES if m not in names]
    if missing:
        raise DrfleetError(
            f"{url} is not a model: it lacks {', '.join(missing)}; nothing was copied",
            fix="name the prefix a training wrote (it holds model/, ip/ and reward_function.py)",
        )
    existing = storage.listed(s3, bucket, target)
    if existing and not wipe:
        raise DrfleetError(
            f"s3://{bucket}/{target}/ already holds {len(existing)} objects; nothing was copied",
            fix="choose another --target, or --wipe to replace them",
        )
    keys = [f"{target}/{n}" for n in sorted(names)]
    size = sum(int(o["Size"]) for o in found)
    meta = {
        n.rsplit("/", 1)[-1]: storage.read(src, src_bucket, f"{prefix}/{n}") for n in MODEL_FILES
    }
    bodies = {k: v for k, v in meta.items() if v is not None}
    result = ModelCopied(url, f"s3://{bucket}/{target}/", keys, size, dry_run)
    if dry_run:
        return result, bodies
    storage.ensure_bucket(s3, bucket)
    storage.delete_prefix(s3, bucket, target, existing if wipe else [])
    meter = Meter(size)
    for name in sorted(names):
        body = src.get_object(Bucket=src_bucket, Key=f"{prefix}/{name}")["Body"].read()
        s3.put_object(Bucket=bucket, Key=f"{target}/{name}", Body=body)
        meter.done += len(body)
        tick(meter.line())
    return result, bodies

"""The model's commands: download-model and import-model (a folder here and back),
upload-model (the DeepRacer console's layout), car-model (a physical car's tar.gz) and
increment-training (the next model starts from this one): DRfC's scripts/upload/* and
scripts/training/increment.sh."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from drfleet.commandline.command import command, inventory_and_options, print_json, show
from drfleet.errors import DrfleetError
from drfleet.store.results import CarFile, Incremented, UploadPrefix
from drfleet.ui import Board


@command(
    prefix="the model's S3 prefix (default: DR_LOCAL_S3_MODEL_PREFIX)",
    out="folder to write it to (default: ./models/<prefix>)",
    source="instead, copy the model at this S3 URL (s3://bucket/prefix, read with "
    "DR_UPLOAD_S3_PROFILE) into the run's S3 (DRfC's -s)",
    target="with --source: the prefix in the run's S3 to put it under (DRfC's -t)",
    config="with --source: also put its reward function, model metadata and hyperparameters "
    "in custom_files/ (DRfC's -c)",
    wipe="with --source: replace what --target already holds (DRfC's -w)",
    dry_run="with --source: say what would be copied; write nothing (DRfC's -d)",
    source_profile="with --source: read it with this AWS profile instead of "
    "DR_UPLOAD_S3_PROFILE (DRfC's own minio: the profile DR_LOCAL_S3_PROFILE names)",
    source_endpoint="with --source: the S3 API to read it from, as aws --endpoint-url "
    "(DRfC's own minio: http://localhost:9000 on its machine)",
)
def download_model(
    c: Any,
    prefix: str | None = None,
    out: str | None = None,
    source: str | None = None,
    target: str | None = None,
    config: bool = False,
    wipe: bool = False,
    dry_run: bool = False,
    source_profile: str | None = None,
    source_endpoint: str | None = None,
    inventory: str | None = None,
    env_dir: str | None = None,
    json: bool = False,
    accept_new_host_keys: bool = False,
    known_hosts: str | None = None,
    verbose: int = 0,
) -> None:
    """Copy a model (checkpoints, metadata, metrics: everything under its prefix) from the
    run's S3 on the trainer to a folder here; with --source, from an S3 URL into the run's S3
    (DRfC's dr-download-model -s URL -t PREFIX)."""
    from drfleet.runs import s3access
    from drfleet.store import models

    if source is None and (
        target or config or wipe or dry_run or source_profile or source_endpoint
    ):
        raise DrfleetError(
            "--target, --config, --wipe, --dry-run, --source-profile and --source-endpoint go "
            "with --source URL"
        )
    if source_endpoint and not source_endpoint.startswith(("http://", "https://")):
        raise DrfleetError(
            f"--source-endpoint {source_endpoint!r} is not an http(s):// address",
            fix="e.g. --source-endpoint http://localhost:9000",
        )
    if source is not None and (not target or prefix or out):
        raise DrfleetError(
            "--source copies into the run's S3: say where with --target PREFIX (not --prefix "
            "or --out)"
        )
    inv, options = inventory_and_options(
        inventory, known_hosts, accept_new_host_keys, env_dir=env_dir, quiet=json
    )
    env = Path(env_dir or ".")
    if source is not None:
        reader = (source_profile, source_endpoint)
        done = _copy_in(
            inv, env, options, source, target or "", config, wipe, dry_run, json, reader
        )
        show(done, json)
        return
    with s3access.run_s3(inv, env, options) as (s3, cfg):
        name = prefix or cfg.setting("DR_LOCAL_S3_MODEL_PREFIX")
        with Board(["model"], title="download", quiet=json) as board:
            done = models.download(
                s3,
                cfg.setting("DR_LOCAL_S3_BUCKET"),
                name,
                Path(out or Path("models") / name),
                lambda line: board.progress("model", f"{name}: {line}"),
            )
    show(done, json)


def _copy_in(
    inv: Any,
    env: Path,
    options: Any,
    source: str,
    target: str,
    config: bool,
    wipe: bool,
    dry_run: bool,
    json: bool,
    reader: tuple[str | None, str | None] = (None, None),
) -> Any:
    """download-model --source: read with DR_UPLOAD_S3_PROFILE (download-model.sh's
    DR_UPLOAD_PROFILE), or reader's profile and endpoint, written to the run's S3; -c's files
    land whole in custom_files/."""
    from drfleet.localfs import atomic_write
    from drfleet.runs import s3access, storage
    from drfleet.store import models

    models.s3_url(source)  # a bad URL is said before anything connects
    with s3access.run_s3(inv, env, options, settings_only=True) as (s3, cfg):
        profile, endpoint = reader
        src = storage.profile_client(
            profile or cfg.setting("DR_UPLOAD_S3_PROFILE"),
            cfg.setting("DR_AWS_APP_REGION"),
            "--source-profile" if profile else "DR_UPLOAD_S3_PROFILE",
            endpoint,
        )
        with Board(["model"], title="download", quiet=json) as board:
            done, meta = models.copy_model_in(
                src,
                source,
                s3,
                cfg.setting("DR_LOCAL_S3_BUCKET"),
                target,
                wipe,
                dry_run,
                lambda line: board.progress("model", f"{target}: {line}"),
            )
        if config:
            for name, body in sorted(meta.items()):
                path = cfg.custom_dir / name
                if not dry_run:
                    atomic_write(path, body, 0o644)
                done.config.append(str(path))
    return done


@command(
    src="the folder holding the model (a download-model folder, or DRfC's model prefix)",
    prefix="the S3 prefix to put it under (then DR_LOCAL_S3_PRETRAINED_PREFIX can name it)",
    wipe="replace what the prefix already holds",
)
def import_model(
    c: Any,
    src: str = "",
    prefix: str = "",
    wipe: bool = False,
    inventory: str | None = None,
    env_dir: str | None = None,
    json: bool = False,
    accept_new_host_keys: bool = False,
    known_hosts: str | None = None,
    verbose: int = 0,
) -> None:
    """Put a model folder into the run's S3 under a prefix of its own, so training can start
    from it (DR_LOCAL_S3_PRETRAINED=True, DR_LOCAL_S3_PRETRAINED_PREFIX=that prefix)."""
    from drfleet.runs import s3access
    from drfleet.store import models

    if not src or not prefix:
        raise DrfleetError("say what and where: --src FOLDER --prefix NAME (a new model prefix)")

    inv, options = inventory_and_options(
        inventory, known_hosts, accept_new_host_keys, env_dir=env_dir, quiet=json
    )
    env = Path(env_dir or ".")
    with s3access.run_s3(inv, env, options) as (s3, cfg), Board(["model"], quiet=json) as board:
        done = models.upload(
            s3,
            cfg.setting("DR_LOCAL_S3_BUCKET"),
            prefix,
            Path(src),
            wipe,
            lambda line: board.progress("model", f"{prefix}: {line}"),
        )
    show(done, json)


CHECKPOINT_HELP = "last (default), best, or a checkpoint number (DRfC's -b is best, -c N is N)"


@command(
    checkpoint=CHECKPOINT_HELP,
    prefix="upload the model of this S3 prefix, to the same prefix (DRfC's -p)",
    local="upload to the run's own bucket (DR_LOCAL_S3_BUCKET) instead (DRfC's -L)",
    wipe="delete what the target's model/ held besides (DRfC's -w)",
    dry_run="say what would be copied; write nothing (DRfC's -d)",
    increment="first increment DR_UPLOAD_S3_PREFIX in run.env (DRfC's -1)",
)
def upload_model(
    c: Any,
    checkpoint: str = "last",
    prefix: str | None = None,
    local: bool = False,
    wipe: bool = False,
    dry_run: bool = False,
    increment: bool = False,
    inventory: str | None = None,
    env_dir: str | None = None,
    json: bool = False,
    accept_new_host_keys: bool = False,
    known_hosts: str | None = None,
    verbose: int = 0,
) -> None:
    """Put a checkpoint where the DeepRacer console imports it (DRfC's dr-upload-model).

    The checkpoint, its model metadata, reward function, metrics, hyperparameters and
    training_params.yaml go to DR_UPLOAD_S3_BUCKET/DR_UPLOAD_S3_PREFIX with
    DR_UPLOAD_S3_PROFILE."""
    from drfleet.drfc import checks
    from drfleet.runs import s3access, storage
    from drfleet.store import console, models

    env = Path(env_dir or ".")
    if not local:
        _upload_bucket_defined(env)
    if increment and not dry_run:  # said on stderr: stdout is --json's
        for line in _increment_upload_prefix(env).lines():
            print(line, file=sys.stderr)
    inv, options = inventory_and_options(
        inventory, known_hosts, accept_new_host_keys, env_dir=env_dir, quiet=json
    )
    with s3access.run_s3(inv, env, options) as (s3, cfg):
        values = {k: cfg.setting(k) for k in cfg.values} | {
            k: cfg.setting(k)
            for k in (
                "DR_LOCAL_S3_MODEL_PREFIX",
                "DR_LOCAL_S3_REWARD_KEY",
                "DR_LOCAL_S3_METRICS_PREFIX",
            )
        }
        src = console.Source.of(values, prefix)
        target = prefix or cfg.setting("DR_UPLOAD_S3_PREFIX")
        if checks.s3_key_problem(target):
            raise DrfleetError(
                f"upload prefix {target!r} {checks.s3_key_problem(target)}",
                where=cfg.where("DR_UPLOAD_S3_PREFIX"),
            )
        if local:
            if target == src.prefix:
                raise DrfleetError(
                    f"the target s3://{cfg.setting('DR_LOCAL_S3_BUCKET')}/{target}/ is the model "
                    "itself; nothing was copied",
                    fix="set DR_UPLOAD_S3_PREFIX to another prefix",
                )
            dst, dst_bucket = s3, cfg.setting("DR_LOCAL_S3_BUCKET")
        else:
            dst_bucket = cfg.setting("DR_UPLOAD_S3_BUCKET")
            dst = storage.profile_client(
                cfg.setting("DR_UPLOAD_S3_PROFILE"),
                cfg.setting("DR_AWS_APP_REGION"),
                "DR_UPLOAD_S3_PROFILE",
            )
        with Board(["model"], title="upload", quiet=json) as board:
            done = models.upload_model(
                s3,
                cfg.setting("DR_LOCAL_S3_BUCKET"),
                src,
                dst,
                dst_bucket,
                target,
                checkpoint,
                values,
                wipe,
                dry_run,
                lambda line: board.progress("model", f"{target}: {line}"),
                "DR_LOCAL_S3_BUCKET" if local else "DR_UPLOAD_S3_BUCKET",
            )
    show(done, json)


def _upload_bucket_defined(env: Path) -> None:
    """DRfC stops with "No upload bucket defined" when DR_UPLOAD_S3_BUCKET is empty; its
    template's not-defined means the same. Said before anything connects."""
    from drfleet.drfc import config

    cfg = config.load(env)
    bucket = cfg.setting("DR_UPLOAD_S3_BUCKET")
    if bucket in ("", "not-defined"):
        raise DrfleetError(
            f"DR_UPLOAD_S3_BUCKET is {bucket or 'empty'}: no upload bucket is defined",
            where=cfg.where("DR_UPLOAD_S3_BUCKET"),
            fix="set it to the S3 bucket the DeepRacer console imports from (or use --local)",
        )


def _increment_upload_prefix(env: Path) -> UploadPrefix:
    """scripts/upload/increment.sh: DR_UPLOAD_S3_PREFIX gets the next number in run.env (the
    old file kept as run.env.bak)."""
    from drfleet.drfc import config
    from drfleet.localfs import atomic_write
    from drfleet.runs import increment

    cfg = config.load(env)
    current = cfg.setting("DR_UPLOAD_S3_PREFIX")
    new = increment.next_prefix(current)
    path = Path(cfg.run.path)
    text = path.read_text()
    atomic_write(path.with_name(path.name + ".bak"), text)
    atomic_write(path, increment.rewrite(text, {"DR_UPLOAD_S3_PREFIX": new}))
    return UploadPrefix(current, new, str(path))


@command()
def increment_upload_model(
    c: Any,
    env_dir: str | None = None,
    json: bool = False,
    verbose: int = 0,
) -> None:
    """Give DR_UPLOAD_S3_PREFIX in run.env the next number (DRfC's dr-increment-upload-model),
    so the next upload-model goes to a new prefix; nothing is uploaded."""
    show(_increment_upload_prefix(Path(env_dir or ".")), json)


@command(
    checkpoint="best (default: the model the trainer keeps in /opt/ml/model), last, or a number",
    prefix="the model's S3 prefix (default: DR_LOCAL_S3_MODEL_PREFIX)",
    out="the file to write (default: ./carfile.tar.gz)",
    upload="also put it at DR_UPLOAD_S3_BUCKET/DR_UPLOAD_S3_PREFIX/carfile.tar.gz",
    local="also put it in the run's bucket under DR_UPLOAD_S3_PREFIX (DRfC's -L)",
)
def car_model(
    c: Any,
    checkpoint: str = "best",
    prefix: str | None = None,
    out: str = "carfile.tar.gz",
    upload: bool = False,
    local: bool = False,
    inventory: str | None = None,
    env_dir: str | None = None,
    json: bool = False,
    accept_new_host_keys: bool = False,
    known_hosts: str | None = None,
    verbose: int = 0,
) -> None:
    """Write the tar.gz a physical DeepRacer car loads (DRfC's dr-upload-car-zip).

    It holds agent/model.pb and model_metadata.json; --upload or --local also put it in S3."""
    from drfleet.localfs import atomic_write
    from drfleet.runs import s3access, storage
    from drfleet.store import console, models

    if upload and not local:
        _upload_bucket_defined(Path(env_dir or "."))
    inv, options = inventory_and_options(
        inventory, known_hosts, accept_new_host_keys, env_dir=env_dir, quiet=json
    )
    with s3access.run_s3(inv, Path(env_dir or "."), options) as (s3, cfg):
        values = {k: cfg.setting(k) for k in ("DR_LOCAL_S3_MODEL_PREFIX",)}
        src = console.Source.of(values, prefix)
        body, ckpt = models.car_model(s3, cfg.setting("DR_LOCAL_S3_BUCKET"), src, checkpoint)
        path = atomic_write(Path(out), body, 0o644)
        done = CarFile(ckpt.name, str(path), len(body))
        key = f"{cfg.setting('DR_UPLOAD_S3_PREFIX')}/carfile.tar.gz"
        if local:
            s3.put_object(Bucket=cfg.setting("DR_LOCAL_S3_BUCKET"), Key=key, Body=body)
            done.uploaded = f"s3://{cfg.setting('DR_LOCAL_S3_BUCKET')}/{key}"
        elif upload:
            dst = storage.profile_client(
                cfg.setting("DR_UPLOAD_S3_PROFILE"),
                cfg.setting("DR_AWS_APP_REGION"),
                "DR_UPLOAD_S3_PROFILE",
            )
            bucket = cfg.setting("DR_UPLOAD_S3_BUCKET")
            storage.bucket_exists(dst, bucket, "DR_UPLOAD_S3_BUCKET")
            dst.put_object(Bucket=bucket, Key=key, Body=body)
            done.uploaded = f"s3://{bucket}/{key}"
    show(done, json)


@command(
    prefix="the new model prefix (default: the current one, numbered up)",
    delim="the delimiter before the number (default -)",
    checkpoint="start from the old model's best or last checkpoint (sets "
    "DR_LOCAL_S3_PRETRAINED_CHECKPOINT; default: leave it as it is)",
    wipe="delete what the new prefix already holds in the run's S3",
)
def increment_training(
    c: Any,
    prefix: str | None = None,
    delim: str = "-",
    checkpoint: str | None = None,
    wipe: bool = False,
    inventory: str | None = None,
    env_dir: str | None = None,
    json: bool = False,
    accept_new_host_keys: bool = False,
    known_hosts: str | None = None,
    verbose: int = 0,
) -> None:
    """Make the next training start from this model (DRfC's dr-increment-training).

    run.env gets a new DR_LOCAL_S3_MODEL_PREFIX, and the current one becomes
    DR_LOCAL_S3_PRETRAINED_PREFIX with DR_LOCAL_S3_PRETRAINED=True. The old run.env is kept as
    run.env.bak."""
    from drfleet.drfc import checks, config
    from drfleet.localfs import atomic_write
    from drfleet.runs import increment, s3access, storage

    env = Path(env_dir or ".")
    cfg = config.load(env)
    current = cfg.setting("DR_LOCAL_S3_MODEL_PREFIX")
    changes = increment.training_changes(current, prefix, delim, checkpoint)
    new = changes["DR_LOCAL_S3_MODEL_PREFIX"]
    if checks.s3_key_problem(new):
        raise DrfleetError(f"--prefix {new!r} {checks.s3_key_problem(new)}")
    deleted: int | None = None
    if wipe:
        inv, options = inventory_and_options(
            inventory, known_hosts, accept_new_host_keys, env_dir=env_dir, quiet=json
        )
        with s3access.run_s3(inv, env, options) as (s3, _cfg):
            bucket = cfg.setting("DR_LOCAL_S3_BUCKET")
            existing = storage.listed(s3, bucket, new)
            deleted = len(existing)
            storage.delete_prefix(s3, bucket, new, existing)
    path = Path(cfg.run.path)
    text = path.read_text()
    atomic_write(path.with_name(path.name + ".bak"), text)
    atomic_write(path, increment.rewrite(text, changes))
    bucket = cfg.setting("DR_LOCAL_S3_BUCKET")
    show(Incremented(current, new, str(path), changes, deleted, bucket), json)


@command(
    command="a command line to run (through sh) instead of an interactive shell",
)
def s3(
    c: Any,
    command: str | None = None,
    inventory: str | None = None,
    env_dir: str | None = None,
    json: bool = False,
    accept_new_host_keys: bool = False,
    known_hosts: str | None = None,
    verbose: int = 0,
) -> None:
    """Run a shell (or --command) with the run's S3 in its environment (DRfC's dr-local-aws).

    AWS_ENDPOINT_URL, the keys and the region are set, so `aws s3 ls s3://bucket/` and boto3
    reach the trainer's minio (through SSH, open while the shell runs) or DR_REMOTE_MINIO_URL.
    Nothing is printed or written: the keys live in that process's environment only. With
    DR_CLOUD=aws it is your own AWS environment, with DR_LOCAL_S3_PROFILE as AWS_PROFILE."""
    import os
    import subprocess

    from drfleet.runs import s3access, storage
    from drfleet.shell import mask

    if json and not command:
        raise DrfleetError(
            "--json goes with --command (a shell of your own prints no JSON)",
            fix="e.g. drfleet s3 --command 'aws s3 ls s3://bucket/' --json",
        )
    inv, options = inventory_and_options(
        inventory, known_hosts, accept_new_host_keys, env_dir=env_dir, quiet=json
    )
    env_path = Path(env_dir or ".")
    with s3access.run_s3(inv, env_path, options) as (client, cfg):
        region = cfg.setting("DR_AWS_APP_REGION")
        env = {
            **os.environ,
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            "DR_LOCAL_S3_BUCKET": cfg.setting("DR_LOCAL_S3_BUCKET"),
        }
        if cfg.storage == "aws":  # activate.sh's dr-local-aws is plain `aws` there
            import boto3

            if cfg.setting("DR_LOCAL_S3_PROFILE") in boto3.Session().available_profiles:
                env["AWS_PROFILE"] = cfg.setting("DR_LOCAL_S3_PROFILE")
        else:
            creds = storage.run_credentials(cfg, env_path)
            env["AWS_ENDPOINT_URL"] = client.meta.endpoint_url
            env["AWS_ACCESS_KEY_ID"] = creds["access_key"]
            env["AWS_SECRET_ACCESS_KEY"] = creds["secret_key"]
            for k in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
                env.pop(k, None)
        if command and json:  # its output, with the run's keys masked, in one document
            ran = subprocess.run(
                ["sh", "-c", command], env=env, check=False, capture_output=True, text=True
            )
            keys = tuple(
                env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if env.get(k)
            )
            code = ran.returncode
            print_json(
                {
                    "ok": code == 0,
                    "exit": code,
                    "stdout": mask(ran.stdout, keys),
                    "stderr": mask(ran.stderr, keys),
                }
            )
        elif command:
            code = subprocess.run(["sh", "-c", command], env=env, check=False).returncode
        else:
            shell = os.environ.get("SHELL") or "/bin/sh"
            where = env.get("AWS_ENDPOINT_URL") or f"AWS ({region})"
            print(f"S3 of this run at {where} until you exit this shell")
            code = subprocess.run([shell], env=env, check=False).returncode
    if code:
        from invoke.exceptions import Exit

        raise Exit(code=code)


@command()
def upload_custom_files(
    c: Any,
    inventory: str | None = None,
    env_dir: str | None = None,
    json: bool = False,
    accept_new_host_keys: bool = False,
    known_hosts: str | None = None,
    verbose: int = 0,
) -> None:
    """Put custom_files/ (of DR_EXPERIMENT_NAME's folder when set) in the run's S3 under
    DR_LOCAL_S3_CUSTOM_FILES_PREFIX, the files that changed only (DRfC's
    dr-upload-custom-files); train does this itself."""
    _custom_files(False, inventory, env_dir, json, accept_new_host_keys, known_hosts)


@command()
def download_custom_files(
    c: Any,
    inventory: str | None = None,
    env_dir: str | None = None,
    json: bool = False,
    accept_new_host_keys: bool = False,
    known_hosts: str | None = None,
    verbose: int = 0,
) -> None:
    """Copy the run's S3 custom files (DR_LOCAL_S3_CUSTOM_FILES_PREFIX) into custom_files/
    (of DR_EXPERIMENT_NAME's folder when set), replacing files of the same name (DRfC's
    dr-download-custom-files). custom_files/ need not hold anything yet."""
    _custom_files(True, inventory, env_dir, json, accept_new_host_keys, known_hosts)


def _custom_files(
    down: bool,
    inventory: str | None,
    env_dir: str | None,
    json: bool,
    accept: bool,
    known_hosts: str | None,
) -> None:
    """custom_files/ (the experiment's when DR_EXPERIMENT_NAME is set) to or from
    DR_LOCAL_S3_CUSTOM_FILES_PREFIX of the run's S3; down needs system.env and run.env only."""
    from drfleet.runs import s3access
    from drfleet.store import models

    inv, options = inventory_and_options(
        inventory, known_hosts, accept, env_dir=env_dir, quiet=json
    )
    env = Path(env_dir or ".")
    with s3access.run_s3(inv, env, options, settings_only=down) as (s3, cfg):
        bucket = cfg.setting("DR_LOCAL_S3_BUCKET")
        prefix = cfg.get("DR_LOCAL_S3_CUSTOM_FILES_PREFIX", "custom_files")
        title = "download" if down else "upload"
        with Board(["custom_files"], title=title, quiet=json) as board:
            tick = lambda line: board.progress("custom_files", line)  # noqa: E731
            if down:
                fix = "upload them first (drfleet upload-custom-files, or train)"
                done = models.download(s3, bucket, prefix, cfg.custom_dir, tick, fix=fix)
            else:
                done = models.upload_custom(s3, bucket, prefix, cfg.custom_dir, tick)
    show(done, json)


TASKS = (
    download_model,
    import_model,
    upload_model,
    car_model,
    increment_training,
    s3,
    increment_upload_model,
    upload_custom_files,
    download_custom_files,
)

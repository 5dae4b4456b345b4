"""DeepRacer on AWS (DRoA), the community's replacement for the DeepRacer console: DRfC's
droa-list-models, droa-get-model, droa-download-logs, droa-delete-model and droa-import-model
(bin/module/droa.sh, scripts/droa/*.py), by the same names and flags. DR_DROA_URL and
DR_DROA_USERNAME come from the flags, the environment or system.env; the password is
prompted for (or --password), never read from a file."""

from __future__ import annotations

import getpass
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from drfleet.commandline.command import command, inventory_and_options, print_json, show
from drfleet.errors import DrfleetError
from drfleet.ui import Board

LIST_FIX = "drfleet droa-list-models lists your models and their ids"
ASSET_FIX = "drfleet droa-get-model MODEL_ID shows what DRoA holds of it"
POLL, POLL_LIMIT = 5.0, 300.0  # download_logs.py: every 5 s for 5 minutes while QUEUED
LOGIN_HELP = {
    "url": "the DRoA site's address (default: DR_DROA_URL of the environment or system.env)",
    "username": "the DRoA login e-mail (default: DR_DROA_USERNAME)",
    "password": "the password; `-` reads it from standard input (default: asked for on the "
    "terminal). Given here, other users may see it in ps; it is never read from a file",
}


def _settings(env_dir: str | None) -> dict[str, str]:
    """DR_DROA_* of the environment, else of system.env (DRfC's dr-update-env exports them)."""
    from drfleet.drfc import envfile

    values: dict[str, str] = {}
    path = Path(env_dir or ".") / "system.env"
    if path.is_file():
        values = dict(envfile.load(path).values)
    for key in ("DR_DROA_URL", "DR_DROA_USERNAME", "DR_DROA_DEBUG"):
        if os.environ.get(key):
            values[key] = os.environ[key]
    return values


def _session(
    url: str | None, username: str | None, password: str | None, env_dir: str | None, json: bool
) -> Any:
    from drfleet.store import droa_client

    values = _settings(env_dir)
    url = url or values.get("DR_DROA_URL")
    username = username or values.get("DR_DROA_USERNAME")
    if not url:
        raise DrfleetError("no DRoA site named", fix="set DR_DROA_URL in system.env or pass --url")
    if not username:
        raise DrfleetError(
            "no DRoA login named", fix="set DR_DROA_USERNAME in system.env or pass --username"
        )
    site = droa_client.site(url)

    def ask() -> str:
        if password == "-":  # noqa: S105 (the flag's value meaning standard input)
            line = sys.stdin.readline().rstrip("\n")
            if not line:
                raise DrfleetError("--password -: standard input held no password")
            return line
        if password:
            return password
        if not sys.stdin.isatty():
            raise DrfleetError(
                f"a password for {username} is needed and there is no terminal to ask on",
                fix="run it in a terminal, or pass it on standard input with --password -",
            )
        return getpass.getpass(f"Password for {username}: ")

    def say(line: str) -> None:
        if not json:
            print(line, file=sys.stderr)

    session = droa_client.Session.open(site, username, ask, Path.home() / ".droa-cache", say)
    session.debug = session.debug or bool(values.get("DR_DROA_DEBUG"))
    return session


@command(**LOGIN_HELP)
def droa_list_models(
    c: Any,
    url: str | None = None,
    username: str | None = None,
    password: str | None = None,
    env_dir: str | None = None,
    json: bool = False,
    verbose: int = 0,
) -> None:
    """List your DRoA models, newest first (DRfC's droa-list-models)."""
    from drfleet.store import droa

    s = _session(url, username, password, env_dir, json)
    models: list[dict[str, Any]] = []
    token, seen = None, set()
    while True:
        page = s.call("GET", "/models", {"token": token} if token else None)
        models += page.get("models") or []
        token = page.get("token")
        if not token or token in seen:  # a page that points back would loop for ever
            break
        seen.add(token)
    models = droa.newest_first(models)
    if json:
        print_json({"models": models})
        return
    for line in droa.table(models):
        print(line)


@command(
    model_id="the model's id (droa-list-models shows them)",
    summary="also the mean reward and progress per iteration of its training metrics",
    **LOGIN_HELP,
)
def droa_get_model(
    c: Any,
    model_id: str,
    summary: bool = False,
    url: str | None = None,
    username: str | None = None,
    password: str | None = None,
    env_dir: str | None = None,
    json: bool = False,
    verbose: int = 0,
) -> None:
    """Show a DRoA model: identity, car, training config, metadata; with -v also its action
    space, reward function and metrics URL (DRfC's droa-get-model)."""
    import json as _json

    from drfleet.store import droa, droa_client

    s = _session(url, username, password, env_dir, json)
    data = s.call("GET", f"/models/{_model_id(model_id)}", fix=LIST_FIX)
    model = data.get("model", data)
    summed: list[str] = []
    if summary:
        metrics_url = model.get("trainingMetricsUrl")
        status, body = droa_client.fetch(metrics_url) if metrics_url else (404, b"")
        if status != 200:
            raise DrfleetError(f"DRoA holds no training metrics for model {model_id}")
        share = (model.get("metadata") or {}).get("hyperparameters", {})
        n = int(share.get("num_episodes_between_training") or 1)
        summed = list(droa.summary(_json.loads(body), n))
    if json:
        print_json({"model": model, "summary": summed} if summary else {"model": model})
        return
    for line in droa.details(model, verbose > 0):
        print(line)
    if summed:
        print()
        for line in summed:
            print(line)


@command(
    model_id="the model's id",
    asset_type="TRAINING_LOGS (default), EVALUATION_LOGS, PHYSICAL_CAR_MODEL, VIRTUAL_MODEL "
    "or VIDEOS",
    evaluation_id="the evaluation, for EVALUATION_LOGS",
    output="file to write (default: the name in the download's address)",
    **LOGIN_HELP,
)
def droa_download_logs(
    c: Any,
    model_id: str,
    asset_type: str = "TRAINING_LOGS",
    evaluation_id: str | None = None,
    output: str | None = None,
    url: str | None = None,
    username: str | None = None,
    password: str | None = None,
    env_dir: str | None = None,
    json: bool = False,
    verbose: int = 0,
) -> None:
    """Download a DRoA model's logs or another of its assets, waiting while DRoA packages it
    (DRfC's droa-download-logs)."""
    from drfleet.store import droa, droa_client

    if asset_type not in droa.ASSET_TYPES:
        raise DrfleetError(
            f"--asset-type {asset_type!r} is not one of {', '.join(droa.ASSET_TYPES)}"
        )
    if asset_type == "EVALUATION_LOGS" and not evaluation_id:
        raise DrfleetError("EVALUATION_LOGS needs --evaluation-id")
    s = _session(url, username, password, env_dir, json)
    query = {"assetType": asset_type} | ({"evaluationId": evaluation_id} if evaluation_id else {})
    deadline = time.monotonic() + POLL_LIMIT
    with Board([model_id], title=asset_type.lower(), quiet=json) as board:
        while True:
            got = s.call("GET", f"/models/{_model_id(model_id)}/getasset", query, fix=ASSET_FIX)
            if got.get("url"):
                break
            if got.get("status") != "QUEUED":
                raise DrfleetError(
                    f"DRoA gave no address for {asset_type} (status {got.get('status')}): "
                    "the asset may not be there yet"
                )
            if time.monotonic() > deadline:
                raise DrfleetError(f"DRoA was still packaging it after {POLL_LIMIT:.0f} s")
            board.progress(model_id, "DRoA is packaging it")
            time.sleep(POLL)
        link = got["url"]
        name = os.path.basename(link.split("?", 1)[0])
        out = Path(output or name or f"{model_id}_{asset_type.lower()}.bin")
        board.progress(model_id, f"downloading to {out}")
        size = droa_client.download(link, out, lambda line: board.progress(model_id, line))
    doc = {"model_id": model_id, "asset_type": asset_type, "path": str(out), "bytes": size}
    if json:
        print_json(doc)
    else:
        print(f"{asset_type} of {model_id}: {size} bytes in {out}")


@command(model_id="the model's id", yes="delete without asking for its name first", **LOGIN_HELP)
def droa_delete_model(
    c: Any,
    model_id: str,
    yes: bool = False,
    url: str | None = None,
    username: str | None = None,
    password: str | None = None,
    env_dir: str | None = None,
    json: bool = False,
    verbose: int = 0,
) -> None:
    """Delete a DRoA model (READY or ERROR ones only); without --yes, type its name to
    confirm (DRfC's droa-delete-model)."""
    from drfleet.store import droa

    s = _session(url, username, password, env_dir, json)
    path = f"/models/{_model_id(model_id)}"
    data = s.call("GET", path, fix=LIST_FIX)
    model = data.get("model", data)
    name, status = model.get("name", model_id), model.get("status", "UNKNOWN")
    if status not in droa.DELETABLE:
        raise DrfleetError(
            f"model {name} is {status}: only READY or ERROR models can be deleted",
            fix="wait until it is READY (drfleet droa-get-model shows it)",
        )
    if not yes:
        if not sys.stdin.isatty():
            raise DrfleetError("no terminal to confirm on", fix="pass --yes to delete it")
        print(f"Model name : {name}\nModel ID   : {model_id}\nStatus     : {status}\n")
        if input("Type the model name to confirm deletion: ").strip() != name:
            print("Aborted: nothing was deleted.")
            return
    s.call("DELETE", path)
    if json:
        print_json({"model_id": model_id, "name": name, "status": "DELETING"})
    else:
        print(f"model {name} ({model_id}): deletion accepted; it is DELETING")


@command(
    model_prefix="the model in the run's S3 (default: DR_LOCAL_S3_MODEL_PREFIX)",
    model_dir="instead, a folder holding model_metadata.json, reward_function.py, "
    "training_params.yaml and hyperparameters.json",
    model_name="the name in DRoA (default: the prefix, or the folder's name)",
    model_description="a description: letters, digits, spaces and hyphens",
    best="the best checkpoint rather than the last",
    checkpoint="the checkpoint of this iteration number",
    **LOGIN_HELP,
)
def droa_import_model(
    c: Any,
    model_prefix: str | None = None,
    model_dir: str | None = None,
    model_name: str | None = None,
    model_description: str | None = None,
    best: bool = False,
    checkpoint: int = -1,
    url: str | None = None,
    username: str | None = None,
    password: str | None = None,
    inventory: str | None = None,
    env_dir: str | None = None,
    json: bool = False,
    accept_new_host_keys: bool = False,
    known_hosts: str | None = None,
    verbose: int = 0,
) -> None:
    """Import a model trained here into DRoA (DRfC's droa-import-model): a checkpoint of the
    run's S3 (the last, --best or --checkpoint N) with its metadata, reward function,
    hyperparameters, metrics and training_params.yaml, or a folder; uploaded to DRoA's bucket,
    then imported. Every file is read and every name checked before the first upload."""
    from drfleet.store import droa, droa_import

    if model_prefix and model_dir:
        raise DrfleetError("--model-prefix or --model-dir, not both")
    if best and checkpoint >= 0:
        raise DrfleetError("--best or --checkpoint N, not both")
    if model_dir and (best or checkpoint >= 0):
        raise DrfleetError("--best and --checkpoint choose from the run's S3, not a folder")
    which = "best" if best else (str(checkpoint) if checkpoint >= 0 else "last")
    if model_description and droa.description_problem(model_description):
        raise DrfleetError(f"--model-description: {droa.description_problem(model_description)}")
    env = Path(env_dir or ".")
    if model_dir:
        name = model_name or Path(model_dir).resolve().name
    else:  # the default name is the prefix: known from run.env before anything connects
        from drfleet.drfc import config

        default = config.load(env, settings_only=True).setting("DR_LOCAL_S3_MODEL_PREFIX")
        name = model_name or model_prefix or default
    _name_ok(name, model_name)
    s = _session(url, username, password, env_dir, json)
    target = f"uploads/models/{uuid.uuid4()}"
    said: list[str] = []
    ckpt = None
    with Board(["model"], title="droa import", quiet=json) as board:
        tick = lambda line: board.progress("model", line)  # noqa: E731
        if model_dir:
            files = droa_import.from_folder(Path(model_dir))
        else:
            from drfleet.runs import s3access

            inv, options = inventory_and_options(
                inventory, known_hosts, accept_new_host_keys, env_dir=env_dir, quiet=json
            )
            with s3access.run_s3(inv, env, options) as (s3, cfg):
                bucket = s.site.upload_bucket
                files, said, ckpt = droa_import.from_run(
                    s3, cfg, model_prefix, which, bucket, target
                )
        result = droa_import.upload(s, files, target, name, model_description, tick)
    result.checkpoint, result.said = ckpt, said
    show(result, json)


def _name_ok(name: str, given: str | None) -> None:
    from drfleet.store import droa

    problem = droa.name_problem(name)
    if problem:
        flag = "--model-name" if given else "the default name (the prefix or folder)"
        raise DrfleetError(f"{flag} {name!r}: {problem}", fix="give --model-name my-model-1")


def _model_id(model_id: str) -> str:
    if not model_id.isascii() or not model_id.isalnum():
        raise DrfleetError(f"{model_id!r} is not a DRoA model id (letters and digits)")
    return model_id


TASKS = (
    droa_list_models,
    droa_get_model,
    droa_download_logs,
    droa_delete_model,
    droa_import_model,
)

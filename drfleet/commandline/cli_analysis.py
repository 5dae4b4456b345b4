"""log-analysis (DRfC's dr-start-loganalysis, dr-stop-loganalysis, dr-logs-loganalysis and
dr-url-loganalysis): the deepracer-analysis Jupyter container on the trainer's host, with the
run's S3 and every worker host's logs at hand, forwarded here through SSH. What it decides is
drfleet.runs.loganalysis's; this module does the I/O: the image through provision's image
task, the host's folders and ~/.aws, the logs carried host to host, the agent told."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drfleet.commandline.command import (
    inventory_and_options,
    print_json,
    print_json_line,
)
from drfleet.errors import DrfleetError
from drfleet.hosts.inventory import Host, Inventory
from drfleet.hosts.remote import Options, Session
from drfleet.names import ANALYSIS_AWS, ANALYSIS_DATA, ANALYSIS_STACK, LOGS, ROBOMAKER_LOGS
from drfleet.runs import loganalysis as la
from drfleet.shell import cmd, join

IMAGES_FROM = ("pull", "controller", "controller-direct", "peer")  # provision's
PLAYBOOK = "log-analysis.yml"  # what image_on runs on the trainer's host
# (inventory, trainer, image, --images-from, options, quiet): the image put on the host
ImageStep = Callable[[Inventory, Host, str, str, Options, bool], None]
NO_LOGS = "DR_ROBOMAKER_MOUNT_LOGS is not True in system.env: the workers keep no log files"
URL_WAIT = 90  # seconds for Jupyter to print its URL (start.sh waits 30, then says try again)


def run(
    image_on: ImageStep,
    stop: bool,
    port: int,
    detach: bool,
    logs: bool,
    collect: bool,
    images_from: str,
    json: bool,
    inventory: str | None,
    env_dir: str | None,
    accept_new_host_keys: bool,
    known_hosts: str | None,
) -> None:
    """`drfleet log-analysis` (its task is cli.py's, which runs playbooks: image_on puts the
    image on the trainer's host by provision's image task)."""
    from drfleet.drfc import config
    from drfleet.hosts.remote import session

    if sum((stop, logs, collect)) > 1:
        raise DrfleetError("give one of --stop, --logs and --collect")
    if images_from not in IMAGES_FROM:
        raise DrfleetError(f"--images-from {images_from}: use {', '.join(IMAGES_FROM)}")
    inv, options = inventory_and_options(
        inventory, known_hosts, accept_new_host_keys, env_dir=env_dir, quiet=json
    )
    root = Path(env_dir or ".")
    trainer = inv.trainer
    if trainer is None:
        raise DrfleetError("no host has the trainer role: log analysis runs on it", where=inv.path)
    if stop:
        _tell(trainer, options, root, ())
        if json:
            print_json({"host": trainer.name, "running": False})
        else:
            print(f"log analysis on {trainer.name}: ended")
        return
    if logs:
        with session(trainer, options) as s:
            running = s.run(cmd("docker", "inspect", la.NAME), become=True, check=False)
            if running.exit_code != 0:  # as dr-logs-loganalysis says it
                raise DrfleetError(f"log analysis is not running on {trainer.name}")
            for chunk in s.stream_out(cmd("docker", "logs", "-f", la.NAME), become=True):
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
        return
    cfg = config.load(root, settings_only=True)
    image = la.image(cfg.system, str(root / "system.env"))
    if collect:
        got = collected(inv, options, cfg.setting("DR_LOCAL_S3_MODEL_PREFIX"))
        if cfg.setting("DR_ROBOMAKER_MOUNT_LOGS").lower() != "true":
            got = {"all": NO_LOGS, **got}
        if json:
            print_json({"host": trainer.name, "collected": got})
        else:
            _said_collected(got)
        return
    image_on(inv, trainer, image, images_from, options, json)
    got = _prepare(inv, trainer, options, root)
    doc: dict[str, Any] = {"host": trainer.name, "running": True, "collected": got}
    with session(trainer, options) as s:
        url = _url(s)
        if detach:
            if json:
                print_json({**doc, "url": url})
            else:
                _said_collected(got)
                print(f"log analysis on {trainer.name}: running (Jupyter at {url} there)")
            return
        from drfleet.hosts import tunnel

        with tunnel.forward(s, "127.0.0.1", la.PORT, port) as local:
            here = la.local_url(url, local)
            if json:  # one line, printed while the forward stays open
                print_json_line({**doc, "url": here, "port": local})
            else:
                _said_collected(got)
                print(f"log analysis of {trainer.name} at {here}; Ctrl-C to close")
            sys.stdout.flush()
            while True:
                time.sleep(3600)


def _said_collected(got: dict[str, Any]) -> None:
    for host, what in got.items():
        print(f"{host}: {what if isinstance(what, str) else f'{what} log files collected'}")


def _prepare(inv: Inventory, trainer: Host, options: Options, root: Path) -> dict[str, Any]:
    """The run's S3 (minio started when it does not run, as every S3 command does), the
    host's folders and ~/.aws, the workers' logs, then the container; the logs collected."""
    from drfleet.hosts.remote import session
    from drfleet.runs import s3access, storage

    with s3access.run_s3(inv, root, options, settings_only=True) as (_s3, cfg):
        creds = storage.run_credentials(cfg, root, create=False)
    files = la.aws_files(
        cfg.setting("DR_LOCAL_S3_PROFILE") or "default",
        creds,
        cfg.setting("DR_AWS_APP_REGION"),
        la.endpoint(cfg.storage, cfg.get("DR_REMOTE_MINIO_URL") or ""),
    )
    with session(trainer, options) as s:
        _folders(s, files)
    got: dict[str, Any] = {"all": NO_LOGS}
    if cfg.setting("DR_ROBOMAKER_MOUNT_LOGS").lower() == "true":
        got = collected(inv, options, cfg.setting("DR_LOCAL_S3_MODEL_PREFIX"))
    _tell(trainer, options, root, (la.container(la.image(cfg.system), cfg.storage == "local"),))
    return got


def _folders(s: Session, files: dict[str, bytes]) -> None:
    """The folders the container mounts, root's as the agent demands of every bind source
    (drfleet_agent.binds): the notebooks' sticky and writable by all as /tmp is, so the
    image's user (ubuntu, 1000) writes there; ~/.aws's files written whole, that user's and
    0600; a credentials file for which the run has no keys (an instance role) removed."""
    from drfleet.playbook.modules.files import atomic_write

    uid = str(la.USER_ID)
    folders = [
        cmd("install", "-d", "-m", "0755", LOGS, ROBOMAKER_LOGS, ANALYSIS_AWS),
        cmd("install", "-d", "-m", "1777", ANALYSIS_DATA),
        cmd("chown", "0:0", ANALYSIS_AWS, ANALYSIS_DATA),  # install -d keeps an owner it finds
        cmd("chmod", "0755", ANALYSIS_AWS),
        cmd("chmod", "1777", ANALYSIS_DATA),
    ]
    s.run(join(folders), become=True, task="log-analysis folders")
    for name in ("config", "credentials"):
        path = f"{ANALYSIS_AWS}/{name}"
        if name not in files:
            s.run(cmd("rm", "-f", path), become=True, task="log-analysis ~/.aws")
            continue
        step = atomic_write(path, "0600", uid, uid, files[name])
        s.run(step.command, stdin=files[name], become=True, task="log-analysis ~/.aws")


def _tell(trainer: Host, options: Options, root: Path, docs: tuple[dict[str, Any], ...]) -> None:
    from drfleet.runs import execute

    containers = execute.typed(trainer.name, ANALYSIS_STACK, docs)
    intent = execute.Intent(
        "log-analysis",
        # no run's assignment: forced, at a generation of its own, none taken from the runs'
        (execute.Stack(trainer.name, ANALYSIS_STACK, "", containers, 120, True, generation=1),),
        preflight=execute.Preflight(),
    )
    with execute.opened({trainer.name: trainer}, options) as sessions:
        execute.execute(intent, root, sessions, options.limit).raise_first()


def _url(s: Session) -> str:
    """The URL with its token that Jupyter printed, waited for (start.sh's loop); never
    echoed by the session, which treats it as the secret it is."""
    deadline = time.monotonic() + URL_WAIT
    while True:
        res = s.run(
            cmd("docker", "logs", la.NAME),
            become=True,
            check=False,
            prints_secret=True,
            timeout=60,
        )
        url = la.url_in(res.stdout + res.stderr)
        if url:
            return url
        if time.monotonic() > deadline:
            raise DrfleetError(
                f"Jupyter printed no URL in {URL_WAIT} s",
                where=s.host.name,
                fix="`drfleet log-analysis --logs` shows what it did",
            )
        time.sleep(1)


def collected(inv: Inventory, options: Options, prefix: str) -> dict[str, Any]:
    """Every other worker host's logs of the run (ROBOMAKER_LOGS/<prefix>, written by its
    robomakers with DR_ROBOMAKER_MOUNT_LOGS) written into the trainer's host's, where the
    container sees them: host -> files carried, or why none were. The controller passes on
    only the members loganalysis.kept allows, and the trainer's tar writes them as root's
    with its own modes."""
    from drfleet.hosts.remote import session

    trainer = inv.trainer
    assert trainer is not None
    out: dict[str, Any] = {}
    others = [h for h in inv.hosts.values() if h.name != trainer.name and "robomaker" in h.roles]
    with session(trainer, options) as dst:
        for host in others:
            try:
                with session(host, options) as src:
                    out[host.name] = _carry(src, dst, prefix)
            except DrfleetError as exc:
                out[host.name] = f"not collected: {exc}"
    return out


def _carry(src: Session, dst: Session, prefix: str) -> int:
    """One host's logs of the run, streamed through here into the trainer's host: the files
    carried."""
    from drfleet.images.image_layers import cut

    here = src.run(cmd("test", "-d", f"{ROBOMAKER_LOGS}/{prefix}"), become=True, check=False)
    if here.exit_code != 0:
        return 0
    count = [0]
    dst.run(cmd("install", "-d", "-m", "0755", ROBOMAKER_LOGS), become=True, task="logs")
    untar = ["tar", "-C", ROBOMAKER_LOGS, "-x", "--no-same-owner", "--no-same-permissions"]
    chunks = src.stream_out(_tar_out(prefix), become=True)
    dst.run(
        cmd(*untar, "--no-overwrite-dir", "-f", "-"),
        stdin=cut(chunks, lambda m: _keep(prefix, m, count)),
        become=True,
        timeout=3600,
        task=f"logs of {src.host.name}",
    )
    return count[0]


def _tar_out(prefix: str) -> Any:
    """tar of the host's logs of the run; a file a robomaker writes while it is read is
    taken as it was (GNU tar's status 1)."""
    return cmd(
        "sh", "-c", 'tar -C "$1" --warning=no-file-changed -cf - -- "$2"; test $? -le 1',
        "sh", ROBOMAKER_LOGS, prefix,
    )  # fmt: skip


def _keep(prefix: str, member: Any, count: list[int]) -> bool:
    kind = {b"0": "file", b"\0": "file", b"5": "dir"}.get(member.kind, "other")
    ok = la.kept(prefix, member.name, kind)
    if ok and kind == "file":
        count[0] += 1
    return ok

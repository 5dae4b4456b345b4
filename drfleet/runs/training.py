"""plan, train --dry-run and init: from the user's files to a plan and what would be sent.
The decisions are in drfc/, plan.py and specs.py; this module gathers their inputs."""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import socket
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drfleet.drfc import checks, config, params
from drfleet.errors import ConfigError, DrfleetError
from drfleet.hosts.inventory import Inventory
from drfleet.localfs import atomic_write
from drfleet.names import RUN_ENV_LABEL, RUN_LABEL, RUN_PREFIX_LABEL, STAGED_FILES, Run
from drfleet.runs import runstate
from drfleet.runs.placement import VIDEO_BASE, Capacity, Plan, place
from drfleet.runs.specs import build, masked, minio_stack, owned

DATA = Path(__file__).parents[1] / "data"
PLACEHOLDER_CREDS = {"access_key": "<minio access key>", "secret_key": "<minio secret key>"}


@dataclass
class Prepared:
    cfg: config.TrainingConfig
    advice: checks.Advice
    plan: Plan
    caps: dict[str, Capacity]
    params: dict[str, dict[str, Any]]
    staged: dict[str, Staged] = field(default_factory=dict)


@dataclass(frozen=True)
class Staged:
    """A directory of the user's that every worker host gets a copy of (a tar, named by its
    content, so a changed directory is a new path and the workers are replaced)."""

    key: str
    source: Path
    tar: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.tar).hexdigest()[:16]

    @property
    def host_path(self) -> str:
        return f"{STAGED_FILES}/{self.digest}"


STAGED_KEYS = ("DR_ROBOMAKER_MOUNT_SIMAPP_DIR", "DR_ROBOMAKER_MOUNT_SCRIPTS_DIR")
MAX_STAGED = 256 << 20


def staged_dirs(cfg: config.TrainingConfig) -> dict[str, Staged]:
    """DR_ROBOMAKER_MOUNT_SIMAPP_DIR / _SCRIPTS_DIR, read as a deterministic tar. DRfC mounts
    them only when they are directories (activate.sh); a set value that is not one is an
    error here rather than silently dropped. A relative path is relative to the env dir."""
    out = {}
    for key in STAGED_KEYS:
        raw = cfg.get(key)
        if not raw:
            continue
        path = (cfg.env_dir / raw).resolve()
        if not path.is_dir():
            raise ConfigError(
                f"{key}={raw} is not a directory",
                where=cfg.where(key),
                fix="point it at the directory to mount into every worker, or remove the line",
            )
        out[key] = Staged(key, path, dir_tar(path, key, cfg.where(key)))
    return out


def dir_tar(
    root: Path, key: str, where: str, edit: Callable[[Path, bytes], bytes] | None = None
) -> bytes:
    """root as a deterministic tar (sorted, root's, no times): the same content, the same
    bytes, so its digest names it. edit: a file's content as it is to be shipped."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(root)))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            if info.isfile() and edit is not None:
                data = edit(path, path.read_bytes())
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            elif info.isfile():
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            elif info.isdir() or info.issym():
                tar.addfile(info)
            if buf.tell() > MAX_STAGED:
                raise ConfigError(
                    f"{key}: {root} holds more than {MAX_STAGED >> 20} MiB",
                    where=where,
                    fix="mount only the files the simulation needs",
                )
    return buf.getvalue()


def prepare(env_dir: str | Path, caps: dict[str, Capacity], workers: int = 0) -> Prepared:
    """The user's files and the hosts' capacities (the caller gathers them) -> the plan and
    everything train would send (pure but for reading the files)."""
    cfg = config.load(env_dir, workers or None)
    advice = checks.check(cfg)
    staged = staged_dirs(cfg)
    files = params.files(cfg)
    names = list(files)
    worlds = [
        cfg.worker_values(k).get("DR_WORLD_NAME", "LGSWide")
        if cfg.multi_config
        else cfg.get("DR_WORLD_NAME", "LGSWide")
        for k in range(1, cfg.workers + 1)
    ]
    config_files = names if cfg.multi_config else names * cfg.workers
    base = VIDEO_BASE + checks.run(cfg).port_offset
    plan = place(cfg.workers, list(caps.values()), worlds, advice.shares, config_files, base)
    plan.warnings.extend(advice.warnings)
    plan.warnings.extend(host_x_warnings(cfg, plan, caps))
    plan.notes.extend(advice.notes)
    return Prepared(cfg, advice, plan, caps, files, staged)


def host_x_warnings(cfg: config.TrainingConfig, plan: Plan, caps: dict[str, Capacity]) -> list[str]:
    """DR_HOST_X is one switch for DRfC's single host; drfleet uses the X server of each
    `opengl: true` host, so the switch is named when it does not match where workers run."""
    if cfg.setting("DR_HOST_X").lower() != "true":
        return []
    without = sorted({w.host for w in plan.workers if not caps[w.host].opengl})
    if not without:
        return []
    return [
        f"{cfg.where('DR_HOST_X')}: DR_HOST_X=True, but workers run on hosts without "
        f"`opengl: true` in the inventory ({', '.join(without)}); they render without host X"
    ]


def prepare_from(
    env_dir: str | Path, caps: dict[str, Capacity], plan: Plan, skip: set[str], inv: Inventory
) -> Prepared:
    """The user's files with a plan already made (a running run's), and the capacity of the
    hosts that are not in skip."""
    cfg = config.load(env_dir, len(plan.workers))
    missing = ({w.host for w in plan.workers} | {plan.trainer}) - skip - set(caps)
    if missing:
        raise DrfleetError(
            "hosts of the running plan are no longer in the inventory (or lost their role): "
            + ", ".join(sorted(missing)),
            where=inv.path,
            fix="put them back, or `drfleet stop` and train again",
        )
    return Prepared(cfg, checks.check(cfg), plan, caps, params.files(cfg), staged_dirs(cfg))


def desired(p: Prepared, creds: dict[str, str], generation: int) -> dict[str, Any]:
    return build(
        p.plan,
        p.cfg,
        p.caps,
        creds,
        p.params,
        generation,
        {k: s.host_path for k, s in p.staged.items()},
    )


def objects(p: Prepared) -> dict[str, bytes]:
    """S3 key -> body: everything train uploads (custom files, params, reward function)."""
    cfg = p.cfg
    out = {}
    custom_prefix = cfg.get("DR_LOCAL_S3_CUSTOM_FILES_PREFIX", "custom_files")
    for f in sorted(cfg.custom_dir.iterdir()):
        if f.is_file():
            out[f"{custom_prefix}/{f.name}"] = f.read_bytes()
    for name, doc in p.params.items():
        out[params.s3_key(cfg, name)] = params.dump(doc).encode()
    out[params.s3_key(cfg, "reward_function.py")] = cfg.reward_function.encode()
    return out


def run_of(env_dir: Path) -> Run:
    """The run env_dir drives: the one its run record names, else its DR_RUN_ID (run 0 when
    its files cannot be read: status and stop still work from anywhere)."""
    state = runstate.load(env_dir)
    if state is not None and state.run_id:
        return Run(state.run_id)
    try:
        return checks.run(config.load(env_dir))
    except DrfleetError:
        return Run()


def webviewer_port(env_dir: Path) -> int:
    """DR_WEBVIEWER_PORT of env_dir's system.env (DRfC's scripts/viewer/start.sh serves its
    page there), else DRfC's template default, 8100."""
    from drfleet.drfc import envfile

    raw = "8100"
    if (env_dir / "system.env").exists():
        f = envfile.load(env_dir / "system.env")
        raw = f.values.get("DR_WEBVIEWER_PORT", raw).strip() or "8100"
        if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= 65535):
            raise ConfigError(
                f"DR_WEBVIEWER_PORT={raw!r} is not a port",
                where=f.where("DR_WEBVIEWER_PORT"),
                fix="a number from 1 to 65535, e.g. DR_WEBVIEWER_PORT=8100",
            )
    return int(raw)


def owner_labels(ident: str, env_dir: Path, cfg: config.TrainingConfig) -> dict[str, str]:
    """The labels that say whose a container is: the env dir's identity
    (runstate.identity), where that env dir is (controller:path) and its model prefix."""
    return {
        RUN_LABEL: ident,
        RUN_ENV_LABEL: f"{socket.gethostname()}:{Path(env_dir).resolve()}",
        RUN_PREFIX_LABEL: cfg.setting("DR_LOCAL_S3_MODEL_PREFIX"),
    }


def dry_run(p: Prepared, out: Path, labels: dict[str, str]) -> list[Path]:
    """Writes what train would upload (under S3 key names) and send (per host: the run's
    stack as desired.json, and on the trainer minio's as s3.json), touching nothing else.
    Credentials are placeholders: secrets never land in these files."""
    written = [atomic_write(_inside(out, key), body) for key, body in objects(p).items()]
    docs = owned(desired(p, PLACEHOLDER_CREDS, generation=0), labels)
    if p.cfg.storage == "local":
        address = p.caps[p.plan.trainer].publish_address
        minio = minio_stack(p.cfg, PLACEHOLDER_CREDS, address, 0)
        written.append(
            atomic_write(
                out / "hosts" / p.plan.trainer / "s3.json",
                json.dumps(masked(minio), indent=2) + "\n",
            )
        )
    for host, doc in docs.items():
        written.append(
            atomic_write(
                out / "hosts" / host / "desired.json", json.dumps(masked(doc), indent=2) + "\n"
            )
        )
    written.append(atomic_write(out / "plan.json", json.dumps(p.plan.as_json(), indent=2) + "\n"))
    return written


def _inside(out: Path, key: str) -> Path:
    """out/key, which must stay under out (checks.s3_keys refused such keys already)."""
    path = (out / key).resolve()
    if not path.is_relative_to(out.resolve()):
        raise DrfleetError(f"{key} would be written outside {out}", where=str(out))
    return path


def credentials(
    env_dir: Path, create: bool = True, given: dict[str, str] | None = None
) -> dict[str, str]:
    """minio credentials: made once (given ones, else generated), kept in a 0600 file beside
    the DRfC files (not create: a reader's view, {} when there are none yet)."""
    path = env_dir / ".drfleet" / "minio-credentials.json"
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = None
    if mode is not None:
        if mode & 0o077:
            raise DrfleetError(
                f"the minio credentials are readable by others (mode {mode:04o})",
                where=str(path),
                fix=f"chmod 600 {path}",
            )
        data: dict[str, str] = json.loads(path.read_text())
        return data
    if not create:
        return {}
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    creds = given or {
        "access_key": "drfleet" + secrets.token_hex(4),
        "secret_key": secrets.token_hex(24),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(creds, fh)
    return creds


def adopt_credentials(env_dir: Path, creds: dict[str, str]) -> None:
    """The fleet's minio keys become env_dir's (it runs with another env dir's: there is one
    minio on a fleet, as in DRfC). Written whole (atomic) and readable by the owner only."""
    path = env_dir / ".drfleet" / "minio-credentials.json"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(path, json.dumps(creds), 0o600)


def init(env_dir: Path) -> tuple[list[Path], list[Path]]:
    """DRfC defaults where missing: (created, kept as they were)."""
    created, kept = [], []
    targets = [
        (DATA / "drfc" / "system.env", env_dir / "system.env"),
        (DATA / "drfc" / "run.env", env_dir / "run.env"),
        (DATA / "local.yml", env_dir / "inventory" / "local.yml"),
    ]
    for f in sorted((DATA / "drfc" / "custom_files").iterdir()):
        targets.append((f, env_dir / "custom_files" / f.name))
    for src, dst in targets:
        if dst.exists():
            kept.append(dst)
            continue
        atomic_write(dst, src.read_bytes(), 0o644)
        created.append(dst)
    return created, kept

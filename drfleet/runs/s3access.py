"""An S3 client on the run's storage for a command: the trainer's minio through SSH (when no
run is live, minio is started alone, through the executor, as train starts it, and keeps
running; its data is on the trainer's disk either way), the user's S3 API at
DR_REMOTE_MINIO_URL, or AWS. Reading commands (status, the viewer) start nothing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from drfleet.drfc import checks, config
from drfleet.drfc.config import TrainingConfig
from drfleet.errors import DrfleetError
from drfleet.hosts import agent_client
from drfleet.hosts.agent_client import reach
from drfleet.hosts.inventory import Inventory
from drfleet.hosts.remote import Options, session
from drfleet.hosts.tunnel import forward
from drfleet.names import MINIO, MINIO_STACK
from drfleet.runs import converge, execute, storage
from drfleet.runs.specs import minio_stack


@contextlib.contextmanager
def run_s3(
    inv: Inventory,
    env_dir: Path,
    options: Options,
    trainer: str | None = None,
    start: bool = True,
    settings_only: bool = False,
) -> Iterator[tuple[Any, TrainingConfig]]:
    """An S3 client on the run's storage (the trainer's minio through SSH, the user's S3 API
    at DR_REMOTE_MINIO_URL, or AWS) and the config. `trainer` (default: the inventory's) is
    where minio runs; it is started there alone when nothing runs, unless `start` is False:
    then it only reads (status, the viewer): nothing is started, no key made or adopted in
    env_dir, and the client is None when minio does not run. settings_only: the
    config is system.env and run.env alone (config.load)."""
    cfg = config.load(env_dir, settings_only=settings_only)
    checks.s3_keys(cfg)
    checks.storage(cfg)
    creds = storage.run_credentials(cfg, env_dir, create=start)
    direct = storage.direct(cfg, creds)
    if direct is not None:  # reached from here, not through the trainer
        yield direct, cfg
        return
    host = inv.hosts[trainer] if trainer else inv.trainer
    if host is None:
        raise DrfleetError("no host of the inventory has the trainer role", where=inv.path)
    with session(host, options) as s:
        held = agent_client.held(s, MINIO_STACK)
        # the fleet's, maybe another env dir's: made this env dir's only by a command that acts
        running = converge.minio_keys(held, creds)
        if held is None or not converge.has_container(s, MINIO):
            if not start:
                yield None, cfg
                return
            doc = minio_stack(cfg, running, host.publish_address, 0)
            intent = minio_intent(
                host.name, doc["containers"], running if running != creds else None
            )
            execute.execute(intent, env_dir, {host.name: s}, 1)
        elif start and running != creds:
            execute.execute(execute.Intent("adopt minio's keys", adopt=running), env_dir, {}, 1)
        creds = running
        with _minio(s, host, creds, cfg) as s3:
            yield s3, cfg


def minio_intent(
    host: str, containers: list[dict[str, Any]], adopt: dict[str, str] | None
) -> execute.Intent:
    """The fleet's minio started alone on host (pure): its stack is the fleet's, not this
    env dir's, so it is obeyed whatever generation another env dir gave it; adopt: the keys
    of the minio stack the host holds become this env dir's."""
    typed = execute.typed(host, MINIO_STACK, containers)
    stack = execute.Stack(host, MINIO_STACK, "", typed, wait=60, force=True)
    return execute.Intent("start minio", (stack,), preflight=execute.Preflight(), adopt=adopt)


@contextlib.contextmanager
def _minio(s: Any, trainer: Any, creds: dict[str, str], cfg: TrainingConfig) -> Iterator[Any]:
    """minio on the trainer, through an SSH forward held open while the block runs."""
    with forward(s, reach(trainer.publish_address), 9000) as port:
        s3 = storage.s3_client(f"http://127.0.0.1:{port}", creds, cfg.setting("DR_AWS_APP_REGION"))
        storage.wait(s3)
        yield s3

"""What the controller last asked of the fleet: <env dir>/.drfleet/run.json.

The plan (which slot runs where), the generation it was sent with, and the hosts that must be
told to drop their workers when they are next reached ("fence": their slots moved while they
were unreachable). `status` needs it to name the slots a down host takes with it, `train
--rebalance` to move them, and every later contact to make the latest assignment win. Written
atomically before anything is sent, so a controller killed half-way leaves a true record."""

from __future__ import annotations

import contextlib
import fcntl
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drfleet.errors import DrfleetError
from drfleet.localfs import atomic_write
from drfleet.runs.placement import Plan, from_json

NAME = "run.json"


@dataclass
class RunState:
    run_id: str
    bucket: str
    prefix: str
    generation: int
    plan: Plan
    fence: dict[str, int] = field(default_factory=dict)  # host -> generation it must get

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "generation": self.generation,
            "plan": self.plan.as_json(),
            "fence": self.fence,
        }


def path(env_dir: Path) -> Path:
    return env_dir / ".drfleet" / NAME


def load(env_dir: Path) -> RunState | None:
    p = path(env_dir)
    try:
        doc = json.loads(p.read_text())
        return RunState(
            str(doc["run_id"]),
            str(doc["bucket"]),
            str(doc["prefix"]),
            int(doc["generation"]),
            from_json(doc["plan"]),
            {str(h): int(g) for h, g in doc.get("fence", {}).items()},
        )
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise DrfleetError(
            f"unreadable run record: {exc}",
            where=str(p),
            fix="delete it; `drfleet train` writes a new one (status and --rebalance need it)",
        ) from None


def save(env_dir: Path, state: RunState) -> None:
    p = path(env_dir)
    p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(p, json.dumps(state.as_json(), indent=2), 0o600, durable=True)


@contextlib.contextmanager
def locked(env_dir: Path) -> Iterator[None]:
    """Serialises read-modify-write of the record between controller commands (a `status
    --watch` in one terminal and `train --rebalance` in another)."""
    lock = path(env_dir).with_name("run.lock")
    lock.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def next_generation(env_dir: Path) -> int:
    """The generation of the next assignment: one more than any handed out from env_dir (the
    record's, or an evaluation's or minio's alone, kept beside it). A counter, never a clock,
    so "the newer assignment wins" cannot be turned round by a clock that is behind. Call it
    under locked()."""
    state = load(env_dir)
    counter = path(env_dir).with_name("generation")
    try:
        last = int(counter.read_text())
    except (FileNotFoundError, ValueError):
        last = 0
    generation = max(state.generation if state else 0, last) + 1
    counter.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(counter, str(generation), 0o600)
    return generation


NO_IDENTITY = "(made by the first train)"


def identity(env_dir: Path, make: bool = True) -> str:
    """What names the runs of env_dir on the hosts (a label on their containers): made once,
    kept beside the record, so another env dir's train knows it would take their place.
    Call it under locked(). Without make, NO_IDENTITY when there is none yet."""
    kept = path(env_dir).with_name("identity")
    try:
        value = kept.read_text().strip()
    except FileNotFoundError:
        value = ""
    if not value and not make:
        return NO_IDENTITY
    if not value:
        value = uuid.uuid4().hex[:16]
        kept.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(kept, value, 0o600)
    return value


def fenced(env_dir: Path, told: dict[str, int]) -> None:
    """Forgets the hosts that were told (host -> the generation they got), unless a newer
    record has asked something else of them meanwhile."""
    with locked(env_dir):
        state = load(env_dir)
        if state is None:
            return
        changed = False
        for host, generation in told.items():
            if state.fence.get(host) == generation:
                del state.fence[host]
                changed = True
        if changed:
            save(env_dir, state)


def clear(env_dir: Path) -> None:
    path(env_dir).unlink(missing_ok=True)

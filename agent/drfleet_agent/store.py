"""The agent's state directory: stacks/<stack>.json (one desired state per stack),
records.json, status.json, agent.pid. An agent before stacks kept one desired.json; it is
split into stacks when first read (spec.split_legacy).

Every write is atomic (temp file, fsync, rename), so a crash leaves the old file or the new
one, never half of one. Files are 0600: the desired state holds credentials.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import IO

from drfleet_agent import spec
from drfleet_agent.contract import HostStatus
from drfleet_agent.reconcile import Record

DEFAULT_DIR = Path("/var/lib/drfleet")


def atomic_write(path: Path, data: str, mode: int = 0o600) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")


class StateDir:
    def __init__(self, path: str | Path = DEFAULT_DIR) -> None:
        self.path = Path(path)
        self.desired = self.path / "desired.json"  # before stacks: read once, then split
        self.stacks = self.path / "stacks"
        self.fleet = self.path / "fleet"  # the fleet of the stacks it last held
        self.records = self.path / "records.json"
        self.status = self.path / "status.json"
        self.pid = self.path / "agent.pid"
        # {tag: image id} as provisioning verified it (drfleet's IMAGE_PINS): a container is
        # created from the id, so a tag moved since (by a crafted archive, say) changes nothing
        self.images = self.path / "images.json"
        self._lock_fh: IO[str] | None = None

    def ensure(self) -> None:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)

    # desired state --------------------------------------------------------------------
    def read_stacks(self) -> dict[str, spec.DesiredState]:
        """Every stack's desired state (a stack with no container has no file)."""
        self._split_legacy()
        out: dict[str, spec.DesiredState] = {}
        try:
            files = sorted(self.stacks.glob("*.json"))
        except FileNotFoundError:
            return out
        for f in files:
            try:
                state = spec.parse(f.read_bytes())
            except FileNotFoundError:  # removed while listed
                continue
            out[state.stack] = state
        return out

    def read_desired(self) -> spec.Fleetwide:
        """What the host is to run: every stack, merged (apply refuses stacks that clash)."""
        try:
            fleet = self.fleet.read_text().strip() or "drfleet"
        except FileNotFoundError:
            fleet = "drfleet"
        return spec.merge(self.read_stacks(), fleet)

    def write_stack(self, state: spec.DesiredState) -> None:
        """Replaces the stack's desired state; a state with no container removes the stack.
        The fleet it names is the host's (kept when no stack is left)."""
        self.ensure()
        self.stacks.mkdir(mode=0o700, exist_ok=True)
        try:
            kept = self.fleet.read_text().strip()
        except FileNotFoundError:
            kept = ""
        if kept != state.fleet:
            atomic_write(self.fleet, state.fleet + "\n", 0o644)
        path = self.stacks / f"{state.stack}.json"
        if state.containers:
            atomic_write(path, state.to_json() + "\n")
        else:
            path.unlink(missing_ok=True)

    def desired_signature(self) -> tuple[tuple[str, int, int], ...]:
        """Changes whenever a stack is written or removed (each write is a new inode)."""
        try:
            files = sorted(self.stacks.glob("*.json"))
        except FileNotFoundError:
            files = []
        out = []
        for f in [*files, self.desired, self.fleet]:
            with contextlib.suppress(FileNotFoundError):
                st = f.stat()
                out.append((f.name, st.st_ino, st.st_mtime_ns))
        return tuple(out)

    def _split_legacy(self) -> None:
        try:
            legacy = spec.parse(self.desired.read_bytes())
        except FileNotFoundError:
            return
        for state in spec.split_legacy(legacy).values():
            if not (self.stacks / f"{state.stack}.json").exists():
                self.write_stack(state)
        self.desired.unlink(missing_ok=True)

    def read_images(self) -> dict[str, str]:
        """The image ids provisioning recorded per tag; what is not an image id is left out."""
        try:
            doc = json.loads(self.images.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(doc, dict):
            return {}
        return {
            k: v
            for k, v in doc.items()
            if isinstance(k, str) and isinstance(v, str) and IMAGE_ID.fullmatch(v)
        }

    # restart records -------------------------------------------------------------------
    def read_records(self) -> dict[str, Record]:
        try:
            raw = json.loads(self.records.read_text())
            return {k: Record(**v) for k, v in raw.items()}
        except (FileNotFoundError, ValueError, TypeError):
            return {}

    def write_records(self, records: dict[str, Record]) -> None:
        self.ensure()
        doc = {k: asdict(v) for k, v in sorted(records.items())}
        atomic_write(self.records, json.dumps(doc, indent=1) + "\n")

    # status ------------------------------------------------------------------------------
    def write_status(self, status: HostStatus) -> None:
        self.ensure()
        text = json.dumps(status.to_json(), indent=1, sort_keys=True) + "\n"
        atomic_write(self.status, text, 0o644)

    def read_status(self) -> HostStatus | None:
        try:
            return HostStatus.parse(json.loads(self.status.read_text()))
        except (FileNotFoundError, ValueError):
            return None

    # the daemon's identity ---------------------------------------------------------------
    def lock(self) -> bool:
        """One daemon per state dir. False when another one holds it."""
        self.ensure()
        fh = open(self.path / "agent.lock", "w")  # noqa: SIM115 - held for the daemon's life
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        self._lock_fh = fh
        atomic_write(self.pid, f"{os.getpid()}\n", 0o644)
        return True

    def daemon_pid(self) -> int | None:
        """The running daemon's pid, or None (checked by its lock, not just the pid file)."""
        try:
            pid = int(self.pid.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            with open(self.path / "agent.lock") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return pid  # someone holds the lock: the daemon is alive
                fcntl.flock(fh, fcntl.LOCK_UN)
                return None
        except FileNotFoundError:
            return None

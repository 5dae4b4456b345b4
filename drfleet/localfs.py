"""Files on the controller, written whole or not at all (the one atomic-write helper), and
where drfleet keeps what it can make again."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(
    path: Path, data: str | bytes, mode: int | None = None, *, durable: bool = False
) -> Path:
    """A temp file beside `path`, then a rename: a reader sees the old file or the new one,
    never half of it. mode: the new file's permission bits (default: the replaced file's, else
    0600, as mkstemp makes it). durable: fsync before the rename (records that must survive a
    crash)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None and path.exists():
        mode = path.stat().st_mode & 0o777
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def cache_dir() -> Path:
    """drfleet's cache on this machine ($XDG_CACHE_HOME/drfleet, ~/.cache/drfleet): only what
    can be made again."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "drfleet"

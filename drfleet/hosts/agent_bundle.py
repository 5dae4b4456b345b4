"""The agent as one zip application (drfleet-agent.pyz) for a host's own python3 (3.10+):
drfleet_agent plus its pure-Python dependencies, copied from the controller's installation,
so a host never needs PyPI. Compiled modules are left out; each of these packages has a
pure-Python fallback for them."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import zipfile
from pathlib import Path

from drfleet.localfs import atomic_write, cache_dir
from drfleet.names import STATE_DIR

PACKAGES = (
    "drfleet_agent",
    "docker",
    "requests",
    "urllib3",
    "idna",
    "certifi",
    "charset_normalizer",
)
_SKIP_SUFFIXES = (".so", ".pyc", ".pyd", ".typed")
_SKIP_DIRS = ("__pycache__", "tests")
MAIN = "import sys\nfrom drfleet_agent.cli import main\nsys.exit(main())\n"
UNIT = (
    Path(importlib.import_module("drfleet_agent").__file__ or "").parent / "drfleet-agent.service"
)


def _files() -> list[tuple[str, Path]]:
    out = []
    for name in PACKAGES:
        pkg = importlib.import_module(name)
        root = Path(pkg.__file__ or "").parent
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root.parent)
            if (
                path.is_file()
                and not path.name.endswith(_SKIP_SUFFIXES)
                and not any(part in _SKIP_DIRS for part in rel.parts)
            ):
                out.append((rel.as_posix(), path))
    return out


def build() -> bytes:
    """The .pyz bytes; identical inputs give identical bytes (fixed timestamps), so its hash
    tells provisioning whether a host already has this agent."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:

        def add(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)

        add("__main__.py", MAIN.encode())
        for arcname, path in _files():
            add(arcname, path.read_bytes())
    return b"#!/usr/bin/env python3\n" + buf.getvalue()


def write(path: Path) -> str:
    data = build()
    path.write_bytes(data)
    path.chmod(0o755)
    return hashlib.sha256(data).hexdigest()


def cached() -> bytes:
    """build(), kept on disk under a key made of its sources' names, sizes and mtimes, so a
    provision run does not spend a fifth of a second zipping the same files again."""
    files = _files()
    key = hashlib.sha256()
    for arcname, path in files:
        st = path.stat()
        key.update(f"{arcname}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    target = cache_dir() / f"agent-{key.hexdigest()[:20]}.pyz"
    try:
        return target.read_bytes()
    except OSError:
        pass
    data = build()
    with contextlib.suppress(OSError):  # a cache, nothing more
        atomic_write(target, data)
    return data


def unit_text(python: str, state_dir: str, ec2_notices: bool = False) -> str:
    """The agent's systemd unit for this python and state dir; ec2_notices: the host is an
    EC2 instance whose interruption notices the agent reports."""
    text = UNIT.read_text()
    flags = f"--state-dir {state_dir}" + (" --ec2-notices" if ec2_notices else "")
    return text.replace("/usr/bin/python3 ", f"{python} ").replace(
        f"--state-dir {STATE_DIR}", flags
    )

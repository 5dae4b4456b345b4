"""SSH host-key verification against the user's known_hosts file.

Fabric accepts any host key (AutoAddPolicy). drfleet refuses an unknown key unless the user
asked for trust-on-first-use (`--accept-new-host-keys`), and always refuses a changed key.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from pathlib import Path

import paramiko

from drfleet.errors import HostKeyError
from drfleet.localfs import atomic_write

DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
_write_lock = threading.Lock()


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's form: `ssh-ed25519 SHA256:...` (what `ssh-keygen -lf` prints)."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


def lookup_name(address: str, port: int) -> str:
    """The name under which OpenSSH files a host: `addr`, or `[addr]:port` off port 22."""
    return address if port == 22 else f"[{address}]:{port}"


class KnownHosts:
    """One known_hosts file, shared by all connections of a run."""

    def __init__(self, path: str | Path | None = None, *, accept_new: bool = False) -> None:
        self.path = Path(os.path.expanduser(str(path or DEFAULT_KNOWN_HOSTS)))
        self.accept_new = accept_new

    def attach(self, client: paramiko.SSHClient, host_name: str) -> None:
        """Loads the file into the client and installs the policy for unknown keys."""
        if self.path.exists():
            try:
                client.load_system_host_keys(str(self.path))
            except (OSError, paramiko.SSHException) as exc:
                raise HostKeyError(
                    f"cannot read known_hosts: {exc}",
                    where=str(self.path),
                    fix="fix or move the file; drfleet verifies host keys",
                ) from None
        client.set_missing_host_key_policy(_Policy(self, host_name))

    def record(self, name: str, key: paramiko.PKey) -> None:
        """Appends a key, atomically (temp file + rename), keeping the file's mode."""
        line = f"{name} {key.get_name()} {key.get_base64()}\n"
        with _write_lock:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            old = self.path.read_text() if self.path.exists() else ""
            if old and not old.endswith("\n"):
                old += "\n"
            atomic_write(self.path, old + line)

    def changed_error(self, host_name: str, exc: paramiko.BadHostKeyException) -> HostKeyError:
        address = exc.hostname
        return HostKeyError(
            f"the SSH host key has CHANGED. known_hosts has {fingerprint(exc.expected_key)}, "
            f"the host offered {fingerprint(exc.key)}. Nothing was run there. This happens when "
            "a machine is rebuilt at the same address, and also when someone intercepts the "
            "connection",
            where=f"{host_name} ({address})",
            fix=f"if you rebuilt it, check the new fingerprint on its console "
            f"(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), remove the old key with "
            f"`ssh-keygen -R '{address}' -f {self.path}` and run again with "
            "--accept-new-host-keys",
        )


class _Policy(paramiko.MissingHostKeyPolicy):
    def __init__(self, known: KnownHosts, host_name: str) -> None:
        self.known = known
        self.host_name = host_name

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        if self.known.accept_new:
            self.known.record(hostname, key)
            client.get_host_keys().add(hostname, key.get_name(), key)
            return
        raise HostKeyError(
            f"unknown SSH host key {fingerprint(key)}: it is not in {self.known.path}. "
            "Nothing was run there",
            where=f"{self.host_name} ({hostname})",
            fix="compare the fingerprint with the host's own (ssh-keygen -lf "
            "/etc/ssh/ssh_host_ed25519_key.pub on its console), then run again with "
            "--accept-new-host-keys to record it, or add it with ssh-keyscan",
        )

"""Waiting until a new host's SSH answers: the instance runs long before sshd does."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def ssh_banner(address: str, port: int = 22, timeout: float = 5.0) -> bool:
    """Whether an SSH server answers there (it sends `SSH-2.0-...` first)."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def wait(
    addresses: dict[str, str], say: Callable[[str, str], None], limit: float = 600.0
) -> list[str]:
    """Waits for every host's sshd; returns the hosts that did not answer within limit."""
    deadline = time.monotonic() + limit
    waiting = dict(addresses)
    while waiting:
        for host, addr in list(waiting.items()):
            if ssh_banner(addr):
                say(host, f"SSH answers at {addr}")
                del waiting[host]
        if not waiting or time.monotonic() > deadline:
            break
        for host in waiting:
            say(host, "waiting for SSH")
        time.sleep(3)
    return sorted(waiting)

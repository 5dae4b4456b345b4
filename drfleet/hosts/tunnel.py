"""Local port forwards over a host's SSH connection (direct-tcpip), so the controller reaches
a port on the host (minio's 9000, a worker's video) without that port being open to it."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

from drfleet.errors import DrfleetError
from drfleet.hosts.remote import Session, SSHSession


def _pump(src: Any, dst: Any) -> None:
    try:
        while True:
            data = src.recv(1 << 16)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError, EOFError):
                s.close()


@contextlib.contextmanager
def forward(sess: Session, host: str, port: int, local: int = 0) -> Iterator[int]:
    """Yields a port on 127.0.0.1 that reaches host:port as seen from the session's host
    (`local`, or any free one when 0)."""
    if not isinstance(sess, SSHSession):
        yield port  # this machine: nothing to forward
        return
    sess.open()
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        server.bind(("127.0.0.1", local))
    except OSError as exc:
        server.close()
        raise DrfleetError(
            f"cannot listen on 127.0.0.1:{local}: {exc.strerror}", fix="choose another --port"
        ) from None
    server.listen(16)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                chan = sess.channel(host, port)
            except Exception:
                client.close()
                continue
            threading.Thread(target=_pump, args=(client, chan), daemon=True).start()
            threading.Thread(target=_pump, args=(chan, client), daemon=True).start()

    threading.Thread(target=accept, daemon=True, name=f"forward-{port}").start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        server.close()

"""The viewer's own server: who may ask it, and how much at once (no hosts needed)."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from drfleet import viewer
from drfleet.errors import DrfleetError


class NoHosts:
    def workers(self) -> list[dict[str, Any]]:
        return []


@pytest.fixture()
def server() -> Iterator[int]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), viewer.make_handler(NoHosts(), "127.0.0.1"))  # type: ignore[arg-type]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield int(srv.server_address[1])
    srv.shutdown()
    srv.server_close()


def get(port: int, path: str, host: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers={"Host": host})
    r = conn.getresponse()
    return r.status, r.read()


def test_a_page_that_rebinds_its_name_to_the_viewer_is_refused(server: int) -> None:
    """DNS rebinding: a web page whose name resolves to 127.0.0.1 must not read the workers."""
    assert get(server, "/api/workers", f"evil.example:{server}")[0] == 403
    assert get(server, "/", f"attacker.test:{server}")[0] == 403
    for ok in (f"127.0.0.1:{server}", f"localhost:{server}", "127.0.0.1", f"[::1]:{server}"):
        assert get(server, "/api/workers", ok) == (200, b"[]"), ok


def test_streams_are_capped_overall_and_per_worker() -> None:
    slots = viewer.Slots(overall=3, per=2)
    assert slots.take(1) and slots.take(1) and not slots.take(1)  # per worker
    assert slots.take(2) and not slots.take(3)  # overall
    slots.give(1)
    assert slots.take(3)


def test_host_reported_values_are_data_in_the_static_page() -> None:
    page = viewer.static_page(
        [
            {
                "slot": 1,
                "host": "<h1>",
                "address": '"><script>x()</script>',
                "port": 8080,
                "world": "<b>w</b>",
                "topics": [],
            }
        ]
    )
    assert "<script>" not in page and "<b>" not in page and "<h1>" not in page
    with pytest.raises(ValueError):
        viewer.static_page(
            [{"slot": 1, "host": "h", "address": "a", "port": "80/x", "world": "", "topics": []}]
        )


def _worker(slot: int, host: str, listens_on: str) -> dict[str, object]:
    return {
        "slot": slot,
        "host": host,
        "address": f"{host}.example",
        "port": 8080 + slot,
        "listens_on": listens_on,
        "world": "w",
        "topics": [],
    }


def test_static_page_needs_videos_published_beyond_loopback() -> None:
    """Video listens on the host's 127.0.0.1 unless the inventory opens it: a page for
    browsers elsewhere refuses, naming the workers and the two ways out."""
    with pytest.raises(DrfleetError) as err:
        viewer.direct([_worker(1, "h1", "0.0.0.0"), _worker(2, "h2", "127.0.0.1")])
    assert "worker 2 on h2" in str(err.value) and "worker 1" not in str(err.value)
    assert "publish_address" in (err.value.fix or "") and "drfleet viewer" in (err.value.fix or "")
    shown = viewer.direct(
        [_worker(1, "h1", "0.0.0.0"), _worker(2, "h2", "10.0.0.7"), _worker(3, "h3", "fd00::7")]
    )
    assert [w["address"] for w in shown] == ["h1.example", "10.0.0.7", "fd00::7"]
    page = viewer.static_page(shown)
    assert 'src="http://10.0.0.7:8082/' in page and 'src="http://[fd00::7]:8083/' in page


class OneWorker:
    """The viewer's Streams with one running worker whose video is a local socket server
    answering `answer` (then, with `stall`, saying nothing more)."""

    def __init__(self, answer: bytes, stall: float = 0.0) -> None:
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.answer, self.stall = answer, stall
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            conn.recv(4096)
            conn.sendall(self.answer)
            time.sleep(self.stall)
            conn.close()

    def workers(self) -> list[dict[str, Any]]:
        return [{"key": "1", "slot": 1, "host": "h1", "port": 8080, "state": "running",
                 "listens_on": "127.0.0.1", "topics": []}]  # fmt: skip

    def open(self, host: str, address: str, port: int) -> socket.socket:
        return socket.create_connection(self.srv.getsockname())


@contextlib.contextmanager
def viewer_of(streams: Any) -> Iterator[int]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), viewer.make_handler(streams, "127.0.0.1"))
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield int(srv.server_address[1])
    finally:
        srv.shutdown()
        srv.server_close()
        streams.srv.close()


def _stream(port: int) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/stream/1", headers={"Host": f"127.0.0.1:{port}"})
    return conn.getresponse()


def test_a_stream_carries_the_viewers_own_headers_never_the_workers() -> None:
    """web_video_server's answer (multipart_stream.cpp) passes as an MJPEG stream under the
    viewer's headers; a worker that answers with a page of its own gets no say over what the
    viewer's origin serves."""
    real = (
        b"HTTP/1.0 200 OK\r\nConnection: close\r\nServer: web_video_server\r\n"
        b"Content-type: multipart/x-mixed-replace;boundary=boundarydonotcross \r\n"
        b"Access-Control-Allow-Origin: *\r\n\r\n--boundarydonotcross \r\nframe-bytes"
    )
    with viewer_of(OneWorker(real)) as port:
        r = _stream(port)
        assert r.status == 200
        assert (
            r.getheader("Content-Type") == "multipart/x-mixed-replace;boundary=boundarydonotcross"
        )
        assert r.getheader("X-Content-Type-Options") == "nosniff"
        assert r.getheader("Access-Control-Allow-Origin") is None
        assert r.read() == b"--boundarydonotcross \r\nframe-bytes"
    for evil in (
        b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<script>alert(1)</script>",
        b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=a b\r\n\r\nx",
        b"HTTP/1.0 302 Found\r\nLocation: http://evil.example/\r\n\r\n",
        b"<script>alert(1)</script>",
    ):
        with viewer_of(OneWorker(evil)) as port:
            r = _stream(port)
            assert r.status == 502 and r.getheader("Content-Type") == "text/plain", evil
            assert b"script" not in r.read()


def test_a_silent_client_or_worker_is_let_go_after_the_idle_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(viewer, "IDLE_TIMEOUT", 0.5)
    head = b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=b\r\n\r\n--b"
    with viewer_of(OneWorker(head, stall=3)) as port:
        idle = socket.create_connection(("127.0.0.1", port))  # says nothing at all
        idle.settimeout(10)
        started = time.monotonic()
        assert idle.recv(1) == b""  # the viewer hung up
        assert time.monotonic() - started < 5
        idle.close()
        started = time.monotonic()
        r = _stream(port)  # the worker stalls after its first bytes
        assert r.read() == b"--b" and time.monotonic() - started < 5

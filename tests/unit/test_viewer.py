"""The viewer's own server: who may ask it, and how much at once (no hosts needed)."""

from __future__ import annotations

import http.client
import threading
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

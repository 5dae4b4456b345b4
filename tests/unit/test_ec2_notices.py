"""The agent's reading of EC2's interruption notices (agent/drfleet_agent/ec2notices.py)
against the test bed's IMDSv2 stand-in (tests/testbed/imds_standin.py) on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from drfleet_agent import ec2notices
from drfleet_agent.contract import HostStatus

from tests.testbed import imds_standin


@pytest.fixture
def imds(tmp_path: Path) -> Iterator[tuple[imds_standin.Metadata, int]]:
    meta = imds_standin.Metadata(tmp_path, {"IMDS_LIFE_CYCLE": "spot"})
    server = imds_standin.serve("127.0.0.1", 0, meta)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield meta, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_no_notice_then_the_interruption_and_the_recommendation_fis_sends(
    imds: tuple[imds_standin.Metadata, int], tmp_path: Path
) -> None:
    _, port = imds
    reader = ec2notices.Metadata("127.0.0.1", port)
    quiet = reader.notices()
    assert (quiet.interruption, quiet.rebalance, quiet.error) == (None, None, "")
    sent = imds_standin.send_interruption(lambda p, t: Path(p).write_text(t), str(tmp_path))
    got = reader.notices()
    assert got.interruption == {"action": "terminate", "time": sent["time"]}
    assert got.rebalance and got.error == ""
    # as the controller reads it from the agent's status
    status = HostStatus.parse({"agent": {"ec2": got.to_json()}, "containers": []})
    assert status.agent.interruption == got.interruption


def test_an_expired_token_is_replaced_and_a_missing_service_is_said(
    imds: tuple[imds_standin.Metadata, int],
) -> None:
    meta, port = imds
    reader = ec2notices.Metadata("127.0.0.1", port)
    assert reader.notices().error == ""
    with meta.lock:  # every token runs out, as after IMDS restarts or the TTL passes
        meta.tokens = {t: 0.0 for t in meta.tokens}
    assert reader.notices().error == ""  # a 401, then a new token
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    gone = ec2notices.Metadata("127.0.0.1", closed, timeout=0.5).notices()
    assert gone.error.startswith("no instance metadata at 127.0.0.1")


def test_the_stand_in_refuses_what_imdsv2_refuses(
    imds: tuple[imds_standin.Metadata, int],
) -> None:
    meta, _ = imds
    assert meta.token(None, False)[0] == 400
    assert meta.token("21601", False)[0] == 400
    assert meta.token("60", True)[0] == 403  # X-Forwarded-For
    assert meta.get(None, "/latest/meta-data/instance-id")[0] == 401
    code, token = meta.token("60", False)
    assert code == 200
    assert meta.get(token, "/latest/meta-data/instance-life-cycle") == (200, "spot")
    assert meta.get(token, "/latest/meta-data/spot/instance-action")[0] == 404


def test_the_watcher_calls_back_when_the_notice_changes(
    imds: tuple[imds_standin.Metadata, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, port = imds
    monkeypatch.setattr(ec2notices, "INTERVAL", 0.05)
    woke = threading.Event()
    watcher = ec2notices.Watcher(ec2notices.Metadata("127.0.0.1", port), woke.set)
    watcher.start()
    try:
        time.sleep(0.3)
        woke.clear()
        imds_standin.send_interruption(lambda p, t: Path(p).write_text(t), str(tmp_path))
        assert woke.wait(5)
        assert watcher.latest.interruption is not None
    finally:
        watcher.stop()

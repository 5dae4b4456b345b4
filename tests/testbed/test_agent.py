"""The host agent against a real dockerd (this machine's), with small local images."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.testbed.agent_harness import AgentHarness, all_running, mode
from tests.testbed.images import ensure_busybox


@pytest.fixture(scope="session")
def busybox() -> str:
    return ensure_busybox()


@pytest.fixture
def ag(tmp_path: Path, busybox: str) -> Iterator[AgentHarness]:
    h = AgentHarness(tmp_path, busybox)
    h.start()
    try:
        yield h
    finally:
        h.close()


def ids(h: AgentHarness) -> dict[str, str]:
    return {c.labels["drfleet.name"]: c.id for c in h.containers()}


def test_apply_three_runs_them_and_status_shows_them(ag: AgentHarness) -> None:
    specs = [
        ag.spec("a", ports={"8080/tcp": None}),
        ag.spec("b"),
        ag.spec("c", networks=["sagemaker-" + ag.fleet], env={"SECRET": "hunter2"}),
    ]
    started = time.monotonic()
    res = ag.apply(ag.doc(*specs))
    assert res.returncode == 0, res.stderr
    rows = ag.wait(all_running(*[s["name"] for s in specs]), timeout=10)
    elapsed = time.monotonic() - started
    assert elapsed < 10
    for s in specs:
        row = rows[s["name"]]
        assert row["container_id"] and row["restarts"] == 0 and row["image"] == ag.image
        assert row["role"] == "robomaker" and row["started_at"]
    assert isinstance(rows[ag.name("a")]["ports"]["8080/tcp"], int)  # an ephemeral host port
    # the local bridge got the compose labels the SageMaker SDK insists on
    net = ag.client.networks.get("sagemaker-" + ag.fleet)
    assert net.attrs["Labels"]["com.docker.compose.network"] == "sagemaker-" + ag.fleet
    # secrets reach the container, never the status, the log or a world-readable file
    c = ag.client.containers.get(ag.name("c"))
    assert "SECRET=hunter2" in c.attrs["Config"]["Env"]
    assert "hunter2" not in (ag.state / "status.json").read_text()
    assert "hunter2" not in ag.log.read_text()
    assert "hunter2" not in ag.agent("status").stdout
    assert mode(ag.state / "stacks" / "default.json") == 0o600 and mode(ag.state) == 0o700
    assert mode(ag.state / "stacks") == 0o700


def test_killed_container_comes_back_with_a_restart_count(ag: AgentHarness) -> None:
    ag.apply(ag.doc(ag.spec("a", restart="always")))
    first = ag.wait(all_running(ag.name("a")))[ag.name("a")]
    ag.client.containers.get(ag.name("a")).kill()
    rows = ag.wait(
        lambda r: r[ag.name("a")]["restarts"] == 1 and r[ag.name("a")]["state"] == "running",
        timeout=15,
    )
    assert rows[ag.name("a")]["container_id"] == first["container_id"]
    assert rows[ag.name("a")]["last_exit_code"] == 137


def test_crash_loop_is_restarted_with_growing_delays(ag: AgentHarness) -> None:
    """Each restart waits base * 2**n after the run before it ended (base 1 s here).

    The delay is measured as dockerd reports it, from one run's FinishedAt to the next
    run's StartedAt, which is what the agent schedules on: never early, and late only by
    how long the agent and dockerd take to act, which a loaded machine stretches.
    """
    ag.apply(ag.doc(ag.spec("crash", command=["sh", "-c", "exit 3"], restart="always")))
    client = ag.client
    starts: list[str] = []
    finishes: list[str] = []
    deadline = time.monotonic() + 30
    while len(starts) < 4 and time.monotonic() < deadline:
        try:
            state = client.api.inspect_container(ag.name("crash"))["State"]
        except docker.errors.NotFound:
            state = {}
        for key, seen in (("StartedAt", starts), ("FinishedAt", finishes)):
            s = state.get(key)
            if s and not s.startswith("0001") and (not seen or s != seen[-1]):
                seen.append(s)
        time.sleep(0.05)
    from drfleet_agent.engine import parse_time

    started = [parse_time(s) or 0.0 for s in starts]
    finished = [parse_time(s) or 0.0 for s in finishes]
    # A run lasts about a millisecond, and dockerd may stamp its end a hair before its
    # start, so runs are paired by order: every FinishedAt stays visible for the whole
    # delay that follows it, so none is missed.
    assert len(started) == 4 and len(finished) >= 3, (starts, finishes)
    delays = [nxt - end for end, nxt in zip(finished, started[1:], strict=False)]
    for n, d in enumerate(delays):
        want = 1.0 * 2**n  # 1 s, 2 s, 4 s
        assert want - 0.05 <= d < want + 1.5, (n, delays, starts, finishes)
    row = ag.rows()[ag.name("crash")]
    assert row["last_exit_code"] == 3 and row["restarts"] >= 3


def test_agent_restart_readopts_without_duplicates(ag: AgentHarness) -> None:
    ag.apply(ag.doc(ag.spec("a"), ag.spec("b", restart="always")))
    ag.wait(all_running(ag.name("a"), ag.name("b")))
    ag.client.containers.get(ag.name("b")).kill()
    ag.wait(lambda r: r[ag.name("b")]["restarts"] == 1 and r[ag.name("b")]["state"] == "running")
    before = ids(ag)
    ag.kill(signal.SIGKILL)
    ag.start()
    time.sleep(3)  # several reconciles
    rows = ag.wait(all_running(ag.name("a"), ag.name("b")))
    assert ids(ag) == before and len(ag.containers()) == 2
    assert rows[ag.name("b")]["restarts"] == 1
    assert ag.status()["agent"]["pid"] == ag.proc.pid  # type: ignore[union-attr]


def test_changed_spec_replaces_only_it_and_removed_spec_is_removed(ag: AgentHarness) -> None:
    ag.apply(ag.doc(ag.spec("a"), ag.spec("b"), ag.spec("c")))
    ag.wait(all_running(ag.name("a"), ag.name("b"), ag.name("c")))
    before = ids(ag)
    ag.apply(ag.doc(ag.spec("a"), ag.spec("b", env={"X": "2"}), ag.spec("c"), generation=2))
    ag.wait(
        lambda r: (
            all_running(ag.name("b"))(r)
            and r[ag.name("b")]["container_id"] != before[ag.name("b")][:12]
        )
    )
    after = ids(ag)
    assert after[ag.name("a")] == before[ag.name("a")]
    assert after[ag.name("c")] == before[ag.name("c")]
    assert after[ag.name("b")] != before[ag.name("b")]
    ag.apply(ag.doc(ag.spec("a"), ag.spec("b", env={"X": "2"}), generation=3))
    deadline = time.monotonic() + 10
    while ag.name("c") in ids(ag) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert set(ids(ag)) == {ag.name("a"), ag.name("b")}


def test_containers_without_labels_are_never_touched(ag: AgentHarness) -> None:
    similar = ag.client.containers.run(
        ag.image, ["sleep", "3600"], name=ag.name("a-copy"), detach=True
    )
    squatter = ag.client.containers.run(ag.image, ["sleep", "3600"], name=ag.name("b"), detach=True)
    ag.foreign += [similar.name, squatter.name]
    ag.apply(ag.doc(ag.spec("a"), ag.spec("b")))
    rows = ag.wait(
        lambda r: r[ag.name("a")]["state"] == "running" and r[ag.name("b")]["state"] == "conflict"
    )
    assert "did not create" in rows[ag.name("b")]["last_error"]
    ag.apply(ag.doc(generation=2))  # nothing desired: only our own container goes
    time.sleep(3)
    for c in (similar, squatter):
        c.reload()
        assert c.status == "running" and "drfleet.fleet" not in c.labels
    assert ids(ag) == {}


@pytest.mark.parametrize(
    "bad,message",
    [
        ("{not json", "not valid JSON at line 1"),
        ('{"containers": [{"name": "x", "image": "i", "bogus": 1}]}', "unknown field 'bogus'"),
        ('{"containers": [{"name": "x"}]}', "missing field 'image'"),
        (
            '{"containers": [{"name": "x", "image": "i"}, {"name": "x", "image": "i"}]}',
            "duplicate name 'x'",
        ),
    ],
)
def test_invalid_desired_state_is_refused_and_nothing_changes(
    ag: AgentHarness, bad: str, message: str
) -> None:
    ag.apply(ag.doc(ag.spec("a")))
    ag.wait(all_running(ag.name("a")))
    before, desired = ids(ag), (ag.state / "stacks" / "default.json").read_bytes()
    res = ag.apply(bad)
    assert res.returncode == 2
    assert message in res.stderr and "previous state stays" in res.stderr
    time.sleep(2.5)
    assert (ag.state / "stacks" / "default.json").read_bytes() == desired
    assert ids(ag) == before and ag.rows()[ag.name("a")]["state"] == "running"


def test_an_older_generation_is_refused(ag: AgentHarness) -> None:
    assert ag.apply(ag.doc(ag.spec("a"), generation=5)).returncode == 0
    res = ag.apply(ag.doc(generation=4))
    assert res.returncode == 2 and "holds generation 5, newer than 4" in res.stderr
    assert json.loads((ag.state / "stacks" / "default.json").read_text())["generation"] == 5


def test_logs_of_a_managed_container(ag: AgentHarness) -> None:
    ag.apply(ag.doc(ag.spec("talk", command=["sh", "-c", "echo one; echo two; sleep 3600"])))
    ag.wait(all_running(ag.name("talk")))
    deadline = time.monotonic() + 10
    out = ""
    while "two" not in out and time.monotonic() < deadline:
        out = ag.agent("logs", ag.name("talk"), "--tail", "1").stdout
        time.sleep(0.1)
    assert out == "two\n"
    missing = ag.agent("logs", ag.name("nope"))
    assert missing.returncode == 1 and "no container" in missing.stderr


def test_unsafe_bind_sources_are_refused_on_create_and_on_every_start(
    ag: AgentHarness, tmp_path: Path
) -> None:
    """Through the agent's own create and start: a link another user owns (pointing at /etc)
    is never mounted; a source that was safe at create but another user's at a restart is
    not started again. The container that stays safe runs on."""
    import os

    user = 4321
    home = tmp_path / "home"
    home.mkdir()
    (home / "etc").symlink_to("/etc")
    os.lchown(home / "etc", user, user)
    data = tmp_path / "data"
    data.mkdir()
    ag.apply(
        ag.doc(
            ag.spec("evil", mounts=[{"source": str(home / "etc"), "target": "/x"}]),
            ag.spec("later", restart="always", mounts=[{"source": str(data), "target": "/d"}]),
            ag.spec("ok", mounts=[{"source": str(tmp_path / "new" / "dir"), "target": "/d"}]),
        )
    )
    rows = ag.wait(all_running(ag.name("later"), ag.name("ok")), timeout=15)
    evil = rows[ag.name("evil")]
    assert evil["state"] != "running" and not evil["container_id"], evil
    assert f"{home / 'etc'} belongs to uid {user}" in evil["last_error"], evil
    assert ag.name("evil") not in ids(ag)  # never created
    assert (tmp_path / "new" / "dir").is_dir()  # a missing source is made, root's

    os.chown(data, user, user)
    ag.client.containers.get(ag.name("later")).kill()

    def refused(r: dict[str, dict[str, Any]]) -> bool:
        return f"{data} belongs to uid {user}" in r[ag.name("later")]["last_error"]

    rows = ag.wait(refused, timeout=15)
    assert rows[ag.name("later")]["state"] != "running"
    assert ag.client.containers.get(ag.name("later")).status != "running"
    assert rows[ag.name("ok")]["state"] == "running"


def test_containers_are_made_from_the_image_provisioning_recorded(ag: AgentHarness) -> None:
    """A tag moved after provisioning (a crafted archive tags anything it carries) does not
    change what the agent runs: it creates from the recorded id, and says so when that image
    is gone."""
    client = ag.client
    real = client.images.get(ag.image).id
    other = f"drfleet-test/moved-{ag.fleet}:1"
    client.images.get(ag.image).tag(other)
    moved = client.images.build(
        fileobj=io.BytesIO(f"FROM {ag.image}\nLABEL moved={ag.fleet}\n".encode()), rm=True
    )[0]
    try:
        moved.tag(other)  # the tag now names another image
        ag.state.mkdir(parents=True, exist_ok=True)
        gone = "sha256:" + "0" * 64
        (ag.state / "images.json").write_text(json.dumps({other: real, "gone:1": gone}))
        ag.apply(ag.doc(ag.spec("a", image=other), ag.spec("b", image="gone:1")))
        rows = ag.wait(
            lambda r: (
                r[ag.name("a")]["state"] == "running"
                and "no longer on this host" in r[ag.name("b")]["last_error"]
            ),
            timeout=15,
        )
        assert client.containers.get(ag.name("a")).attrs["Image"] == real
        assert rows[ag.name("a")]["image"] == other  # status names the tag, as specified
        assert "run drfleet provision" in rows[ag.name("b")]["last_error"]
    finally:
        ag.apply(ag.doc())
        ag.wait(lambda r: not r, timeout=15)
        for image in (moved.id, other):
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(image, force=True)

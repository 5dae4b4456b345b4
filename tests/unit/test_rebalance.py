"""Moving the slots of a host that is down, and what status says about a run (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from drfleet.errors import ConfigError, DrfleetError
from drfleet.hosts.agent_client import HostStatus
from drfleet.runs import runstate
from drfleet.runs.observe import HostReport, leaving, notices, run_summary
from drfleet.runs.placement import Capacity, Plan, from_json, lost, place, rebalance

CAPS = [
    Capacity("t", 16, trainer=True),  # 3 slots
    Capacity("a", 8),  # 2
    Capacity("b", 8),  # 2
    Capacity("c", 12),  # 3
]


def plan(workers: int, caps: list[Capacity] = CAPS) -> Plan:
    worlds = [f"world-{k}" for k in range(1, workers + 1)]
    files = [f"training_params_{k}.yaml" for k in range(1, workers + 1)]
    return place(workers, caps, worlds, [1] * workers, files)


def test_lost_slots_move_keeping_slot_world_params_and_port() -> None:
    before = plan(6)
    on_a = [w for w in before.workers if w.host == "a"]
    assert on_a
    after, moved = rebalance(before, CAPS, {"a"})
    assert set(moved) == {w.slot for w in on_a}
    assert "a" not in {w.host for w in after.workers}
    old = {w.slot: w for w in before.workers}
    for w in after.workers:
        o = old[w.slot]
        assert (w.world, w.config_file, w.video_port, w.episodes) == (
            o.world,
            o.config_file,
            o.video_port,
            o.episodes,
        )
        if w.slot not in moved:
            assert w.host == o.host  # nothing else moves
    per_host = {c.host: 0 for c in CAPS}
    for w in after.workers:
        per_host[w.host] += 1
    assert all(per_host[c.host] <= c.slots for c in CAPS)  # never oversubscribed


def test_moves_go_to_the_least_loaded_hosts() -> None:
    before = plan(4)  # t, a, b, c each get one
    _, moved = rebalance(before, CAPS, {"b"})
    # 2 of 3 on t or c beats 2 of 2 on a; a tie goes by inventory order
    assert list(moved.values()) == ["t"]


def test_no_capacity_moves_nothing_and_says_what_is_needed() -> None:
    before = plan(8)  # 10 slots in all
    assert [w.host for w in before.workers].count("c") == 2
    with pytest.raises(ConfigError) as err:
        rebalance(before, CAPS, {"c", "a"})
    msg = err.value.message
    assert "no capacity left for the 4 lost workers" in msg
    assert "on a, c" in msg and "room for 1 more" in msg and "nothing was moved" in msg
    assert "t 2 of 3, b 2 of 2" in msg
    assert "12 more vCPUs for 3 more workers" in (err.value.fix or "")
    assert "--rebalance" in (err.value.fix or "")


def test_trainer_down_cannot_be_rebalanced() -> None:
    with pytest.raises(ConfigError) as err:
        rebalance(plan(4), CAPS, {"t"})
    assert "the trainer host t is down" in err.value.message


def test_nothing_down_nothing_moves() -> None:
    before = plan(5)
    assert rebalance(before, CAPS, set()) == (before, {})


def test_new_hosts_in_the_inventory_take_lost_slots() -> None:
    before = plan(10)  # full
    after, moved = rebalance(before, [*CAPS, Capacity("d", 16)], {"a"})
    assert set(moved.values()) == {"d"}
    assert len(after.workers) == 10


def test_run_record_round_trips_and_status_names_lost_slots(tmp_path: Path) -> None:
    p = plan(4)
    state = runstate.RunState("0", "bucket", "prefix", 7, p, {"x": 9})
    runstate.save(tmp_path, state)
    assert (runstate.path(tmp_path).stat().st_mode & 0o777) == 0o600
    back = runstate.load(tmp_path)
    assert back is not None and back.as_json() == state.as_json()
    assert from_json(p.as_json()) == p
    hosts = {
        name: HostReport(name, True, HostStatus.parse(doc))
        for name, doc in {
            "t": {"containers": [{"name": "drfleet-robomaker-3", "state": "running"}]},
            "b": {"containers": []},
            "c": {"containers": []},
        }.items()
    }
    hosts["a"] = HostReport("a", False, None, "unreachable")
    summary = run_summary(back, hosts)
    slot_a = next(w.slot for w in p.workers if w.host == "a")
    assert summary["lost"] == {"a": [slot_a]}
    assert summary["slots"][str(slot_a)]["state"] == "lost"
    assert summary["trainer"]["state"] == "ok"
    assert summary["fence_pending"] == ["x"]
    assert lost(p, {"a"}) == {"a": [slot_a]}


def test_unreadable_run_record_is_named(tmp_path: Path) -> None:
    runstate.path(tmp_path).parent.mkdir()
    runstate.path(tmp_path).write_text("{not json")
    with pytest.raises(DrfleetError) as err:
        runstate.load(tmp_path)
    assert "run.json" in (err.value.where or "") and "delete it" in (err.value.fix or "")


def test_a_host_told_is_forgotten_unless_a_newer_record_asks_again(tmp_path: Path) -> None:
    runstate.save(tmp_path, runstate.RunState("0", "b", "p", 9, plan(2), {"x": 5, "y": 9}))
    runstate.fenced(tmp_path, {"x": 5, "y": 7})  # y was told generation 7; the record wants 9
    back = runstate.load(tmp_path)
    assert back is not None and back.fence == {"y": 9}


def _host(name: str, ec2: dict | None = None) -> HostReport:
    return HostReport(
        name, True, HostStatus.parse({"agent": {"stacks": {}, "ec2": ec2}, "containers": []})
    )


def test_a_spot_notice_makes_a_host_leaving_and_a_trainer_notice_is_said_apart() -> None:
    p = plan(6)
    state = runstate.RunState("0", "b", "p", 3, p, {})
    notice = {"interruption": {"action": "terminate", "time": "2026-12-06T01:02:03Z"}}
    hosts = {h: _host(h) for h in ("t", "a", "b", "c")}
    hosts["a"] = _host("a", {**notice, "rebalance": None, "error": ""})
    hosts["b"] = _host("b", {"interruption": None, "rebalance": "2026-12-06T01:00:00Z"})
    assert notices(hosts) == {"a": notice["interruption"]}
    assert leaving(state, hosts) == {"a"}
    summary = run_summary(state, hosts)
    on_a = [w.slot for w in p.workers if w.host == "a"]
    assert summary["leaving"] == {
        "a": {"action": "terminate", "time": "2026-12-06T01:02:03Z", "slots": on_a,
              "trainer": False}
    }  # fmt: skip
    assert summary["lost"] == {}  # leaving is not lost: its workers still train
    # moved away, a leaving host is no longer the run's business; the trainer's always is
    moved, _ = rebalance(p, CAPS, {"a"})
    after = runstate.RunState("0", "b", "p", 4, moved, {})
    assert leaving(after, hosts) == set() and run_summary(after, hosts)["leaving"] == {}
    hosts["t"] = _host("t", notice)
    assert run_summary(after, hosts)["leaving"]["t"]["trainer"] is True

"""The agent's status document: written by the agent, read by the controller, one shape
(drfleet_agent.contract). Also what the controller derives from it (observe) and the
generation counter (runstate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from drfleet_agent.contract import AgentInfo, ContainerStatus, HostStatus, Reason, State

from drfleet.errors import DrfleetError
from drfleet.runs import runstate
from drfleet.runs.observe import FleetReport, HostReport
from drfleet.runs.placement import Placement, Plan


def status(*containers: ContainerStatus, generation: int = 3, stack: str = "s") -> HostStatus:
    for c in containers:
        c.stack = c.stack or stack
    return HostStatus(
        AgentInfo(
            version="1",
            pid=7,
            fleet="drfleet",
            generation=generation,
            stacks={stack: {"run_id": "0", "generation": generation}},
        ),
        list(containers),
    )


def test_status_round_trips_through_json() -> None:
    st = status(
        ContainerStatus(
            "drfleet-robomaker-2",
            "robomaker",
            "img",
            State.WAITING,
            restarts=2,
            last_exit_code=1,
            ports={"8080/tcp": 8081},
            next_restart_at="2026-11-30T12:00:00Z",
            labels={"drfleet-slot": "2"},
        ),
        ContainerStatus("x", "minio", "m", State.CONFLICT, reason=Reason.NAME_TAKEN),
    )
    back = HostStatus.parse(st.to_json())
    assert back == st
    assert back.get("x") is not None and back.get("x").reason is Reason.NAME_TAKEN  # type: ignore[union-attr]
    assert back.to_json()["agent"]["docker"] == {"reachable": False, "error": ""}


def test_a_state_a_newer_agent_invents_is_unknown_not_an_error() -> None:
    doc = status().to_json()
    doc["containers"] = [{"name": "a", "state": "hibernating", "reason": "moon-phase"}]
    c = HostStatus.parse(doc).containers[0]
    assert c.state is State.UNKNOWN and c.reason is Reason.NONE
    assert not c.state.settled and not c.state.definite_failure


@pytest.mark.parametrize("doc", [[], "x", {"containers": [{"state": "running"}]}])
def test_a_malformed_status_is_a_value_error(doc: object) -> None:
    with pytest.raises(ValueError):
        HostStatus.parse(doc)


def test_settled_means_this_stack_at_this_generation_all_up() -> None:
    up = ContainerStatus("a", "r", "i", State.RUNNING)
    done = ContainerStatus("b", "r", "i", State.COMPLETED)
    assert status(up, done).settled("s", 3, 2)
    assert not status(up, done).settled("s", 4, 2)  # an older generation's status
    assert not status(up).settled("s", 3, 2)  # not every container reported yet
    assert not status(up, ContainerStatus("b", "r", "i", State.MISSING)).settled("s", 3, 2)
    # another stack's containers neither count nor hold it back
    other = ContainerStatus("c", "r", "i", State.MISSING, stack="t")
    assert status(up, done, other).settled("s", 3, 2)
    assert not status(up, done).settled("t", 3, 1)
    # a stack emptied: settled once the status no longer shows it
    assert status(up).settled("gone", 5, 0) and not status(up).settled("s", 5, 0)


def test_fleet_report_locates_containers_and_renders_as_before() -> None:
    report = FleetReport(
        {
            "h1": HostReport("h1", True, status(ContainerStatus("c", "r", "i", State.RUNNING))),
            "h2": HostReport("h2", False, None, "unreachable: timed out", fix="start it"),
        }
    )
    assert report.locate("c") is not None and report.locate("c")[0] == "h1"  # type: ignore[index]
    assert report.locate("nope") is None and not report.healthy
    doc = report.to_json()
    # the reason and what to do about it are fields of their own
    assert doc["hosts"]["h2"] == {
        "reachable": False,
        "error": "unreachable: timed out",
        "fix": "start it",
    }
    assert doc["hosts"]["h1"]["reachable"] is True
    assert doc["hosts"]["h1"]["containers"][0]["state"] == "running"


def test_the_generation_is_a_counter_in_the_run_record(tmp_path: Path) -> None:
    """Newer wins by count, never by clock: the next assignment is the record's + 1."""
    assert runstate.next_generation(tmp_path) == 1
    plan = Plan("t", [Placement(1, "t", "w", 5, "training_params_1.yaml", 8080)])
    runstate.save(tmp_path, runstate.RunState("0", "bucket", "p", 41, plan))
    assert runstate.next_generation(tmp_path) == 42


def test_a_published_port_is_reached_where_it_listens() -> None:
    from drfleet_agent.contract import reach

    assert reach("0.0.0.0") == "127.0.0.1" and reach("") == "127.0.0.1"
    assert reach("127.0.0.1") == "127.0.0.1" and reach("::1") == "::1"
    assert reach("10.0.0.7") == "10.0.0.7" and reach("::") == "127.0.0.1"


def _held(*containers: ContainerStatus, stacks: dict[str, int] | None = None) -> HostStatus:
    stacks = stacks or {c.stack: 1 for c in containers}
    return HostStatus(
        AgentInfo(
            fleet="drfleet",
            stacks={
                k: {"run_id": k.rsplit("-", 1)[-1], "generation": g} for k, g in stacks.items()
            },
        ),
        list(containers),
    )


THEIRS = {"drfleet-run": "aaaa", "drfleet-env": "laptop:/home/u/a", "drfleet-prefix": "a-1"}


def _c(name: str, role: str, stack: str, labels: dict[str, str] | None = None) -> ContainerStatus:
    return ContainerStatus(name, role, "img", State.RUNNING, labels=labels or {}, stack=stack)


def _docs(stack: str, generation: int = 5, ident: str = "bbbb") -> dict[str, Any]:
    from drfleet.runs import specs

    run = stack.rsplit("-", 1)[-1]
    docs = {
        "h1": specs.stack(stack, run, generation, [{"name": "x", "role": "rl_coach"}]),
        "h2": specs.stack(stack, run, generation, []),
    }
    return specs.owned(docs, {"drfleet-run": ident})


def test_a_train_of_the_same_run_id_from_another_env_dir_is_refused_naming_it() -> None:
    from drfleet.runs import sharing

    held = {
        "h1": _held(
            _c("drfleet-minio", "minio", "s3", THEIRS),
            _c("drfleet-rlcoach", "rl_coach", "deepracer-0", THEIRS),
        ),
        "h2": _held(_c("drfleet-eval", "evaluation", "deepracer-eval-0", THEIRS)),
        "h3": _held(_c("drfleet-robomaker-1", "robomaker", "deepracer-0")),  # an older drfleet's
    }
    assert sharing.other_runs(held, "deepracer-0", "bbbb") == {"h1": THEIRS}
    assert sharing.other_runs(held, "deepracer-0", "aaaa") == {}  # its own run: resumed
    assert sharing.other_runs(held, "deepracer-1", "bbbb") == {}  # another DR_RUN_ID: beside it
    with pytest.raises(DrfleetError) as err:
        sharing.conflicts(held, _docs("deepracer-0"))
    assert "laptop:/home/u/a (model prefix a-1) as run 0 (DR_RUN_ID)" in err.value.message
    assert "another DR_RUN_ID" in err.value.message
    sharing.conflicts(held, _docs("deepracer-0"), replace=True)  # asked to take its place
    sharing.conflicts(held, _docs("deepracer-1"))  # a second run beside the first
    docs = _docs("deepracer-0")
    assert docs["h1"]["containers"][0]["labels"] == {"drfleet-run": "bbbb"}
    assert sharing.owner(docs) == "bbbb" and sharing.owner({}) == ""


def test_a_newer_generation_of_the_same_stack_wins_and_other_stacks_do_not_count() -> None:
    from drfleet.runs import sharing

    held = {
        "h1": _held(_c("drfleet-1-rlcoach", "rl_coach", "deepracer-1"), stacks={"deepracer-1": 90})
    }
    sharing.conflicts(held, _docs("deepracer-0", generation=5))  # run 1's 90 is another counter
    with pytest.raises(DrfleetError, match="h1 holds generation 90 of stack deepracer-1"):
        sharing.conflicts(held, _docs("deepracer-1", generation=5))


def test_this_env_dirs_own_run_under_its_old_run_id_is_named() -> None:
    """DR_RUN_ID changed while the env dir's run was live: a train would start a second run
    beside it, and the record would forget the first."""
    from drfleet.runs import sharing

    mine = {"drfleet-run": "bbbb"}
    held = {"h1": _held(_c("drfleet-rlcoach", "rl_coach", "deepracer-0", mine))}
    with pytest.raises(DrfleetError, match="still runs as stack deepracer-0 on h1"):
        sharing.conflicts(held, _docs("deepracer-1"))
    # its evaluation goes beside its training, of course
    from drfleet.runs import specs

    ev = specs.owned(
        {"h1": specs.stack("deepracer-eval-0", "0", 6, [{"name": "e", "role": "evaluation"}])},
        mine,
    )
    sharing.conflicts(held, ev)


def test_the_room_other_runs_leave_and_the_one_minio() -> None:
    from drfleet.runs import sharing
    from drfleet.runs.placement import Capacity

    caps = {h: Capacity(h, 16, 32000, 0, False, h == "h1", True, 4, 4) for h in ("h1", "h2")}
    held = {
        "h1": _held(
            _c("drfleet-minio", "minio", "s3"),
            _c("drfleet-rlcoach", "rl_coach", "deepracer-0"),
            _c("drfleet-robomaker-1", "robomaker", "deepracer-0"),
            _c("drfleet-1-robomaker-1", "robomaker", "deepracer-1"),
        ),
        "h2": _held(_c("drfleet-eval", "evaluation", "deepracer-eval-0")),
    }
    left, notes = sharing.room(caps, held, "deepracer-1")
    assert left["h1"].vcpus == 8 and left["h2"].vcpus == 12  # run 1's own worker not counted
    assert (
        notes[0] == "h1: 8 of its 16 vCPUs go to other runs (drfleet-rlcoach, drfleet-robomaker-1)"
    )
    sharing.minio_where(held, "h1")
    with pytest.raises(
        DrfleetError, match="the fleet's minio runs on h1, and this run's trainer is h2"
    ):
        sharing.minio_where(held, "h2")


def test_an_env_dirs_identity_is_made_once(tmp_path: Path) -> None:
    first = runstate.identity(tmp_path)
    assert first == runstate.identity(tmp_path) and len(first) == 16
    assert runstate.identity(tmp_path / "other") != first


def test_a_live_run_keeps_its_plan_whatever_came_beside_it() -> None:
    from drfleet.names import Run
    from drfleet.runs import sharing

    plan = Plan("h1", [Placement(1, "h2", "w", 5, "training_params.yaml", 8080)])
    state = runstate.RunState("0", "bucket", "p", 4, plan)
    live = {"h1": _held(_c("drfleet-rlcoach", "rl_coach", "deepracer-0"))}
    assert sharing.live_plan(state, Run("0"), live, 1) is plan
    assert sharing.live_plan(state, Run("0"), live, 2) is None  # DR_WORKERS changed: plan anew
    assert sharing.live_plan(state, Run("1"), live, 1) is None  # DR_RUN_ID changed
    assert sharing.live_plan(state, Run("0"), {"h1": _held()}, 1) is None  # not running
    assert sharing.live_plan(None, Run("0"), live, 1) is None


def test_the_fleet_minios_keys_are_read_from_its_stack() -> None:
    from drfleet.runs import sharing

    minio = {"name": "drfleet-minio", "env": {"MINIO_ROOT_USER": "u", "MINIO_ROOT_PASSWORD": "p"}}
    assert sharing.running_keys({"containers": [minio]}) == {"access_key": "u", "secret_key": "p"}
    assert sharing.running_keys(None) is None and sharing.running_keys({"containers": []}) is None
    assert sharing.running_keys({"containers": [{"name": "m", "env": {}}]}) is None

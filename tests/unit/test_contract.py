"""The agent's status document: written by the agent, read by the controller, one shape
(drfleet_agent.contract). Also what the controller derives from it (observe) and the
generation counter (runstate)."""

from __future__ import annotations

from pathlib import Path

import pytest
from drfleet_agent.contract import AgentInfo, ContainerStatus, HostStatus, Reason, State

from drfleet import runstate
from drfleet.observe import FleetReport, HostReport
from drfleet.plan import Placement, Plan


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
            "h2": HostReport("h2", False, None, "unreachable: timed out"),
        }
    )
    assert report.locate("c") is not None and report.locate("c")[0] == "h1"  # type: ignore[index]
    assert report.locate("nope") is None and not report.healthy
    doc = report.to_json()
    assert doc["hosts"]["h2"] == {"reachable": False, "error": "unreachable: timed out"}
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


def test_a_train_from_another_env_dir_names_the_run_it_would_replace() -> None:
    from drfleet import converge, specs

    theirs = {"drfleet-run": "aaaa", "drfleet-env": "laptop:/home/u/a", "drfleet-prefix": "a-1"}
    held = {
        "h1": status(
            ContainerStatus("drfleet-minio", "minio", "m", State.RUNNING, labels=theirs),
            ContainerStatus("drfleet-rlcoach", "rl_coach", "s", State.RUNNING, labels=theirs),
        ),
        "h2": status(  # an evaluation is carried over, not replaced
            ContainerStatus("drfleet-eval", "evaluation", "s", State.RUNNING, labels=theirs)
        ),
        "h3": status(ContainerStatus("drfleet-robomaker-1", "robomaker", "s", State.RUNNING)),
    }
    assert converge.other_runs(held, "bbbb") == {"h1": theirs}
    assert converge.other_runs(held, "aaaa") == {}  # its own run: resumed, converged
    docs = specs.owned(
        {"h1": {"run_id": "0", "containers": [{"name": "x", "labels": {"drfleet-slot": "1"}}]},
         "h2": {"run_id": "0", "containers": []}},
        {"drfleet-run": "bbbb"},
    )  # fmt: skip
    assert docs["h1"]["containers"][0]["labels"] == {"drfleet-slot": "1", "drfleet-run": "bbbb"}
    assert converge.owner(docs) == "bbbb" and converge.owner({}) == ""


def test_an_env_dirs_identity_is_made_once(tmp_path: Path) -> None:
    first = runstate.identity(tmp_path)
    assert first == runstate.identity(tmp_path) and len(first) == 16
    assert runstate.identity(tmp_path / "other") != first

"""The swarm task as phases (pure), and how they run: the join token is a late-bound secret
that lives in no data, no command line and no output; check mode says every change."""

from __future__ import annotations

import json
from typing import Any

from drfleet.hosts.hostfacts import Facts
from drfleet.hosts.inventory import Host
from drfleet.hosts.remote import Result
from drfleet.playbook.fleet import run_phases
from drfleet.playbook.model import Late, Task
from drfleet.playbook.modules.docker import JOIN_TOKEN, node_of, plan_swarm, swarm_phases
from drfleet.shell import Secret

INACTIVE = {"state": "inactive", "is_manager": False, "node_id": "", "cluster_id": ""}
NET = {"addresses": [{"dev": "eth0", "cidr": "10.0.0.1/24"}], "default_source": "10.0.0.1"}


def facts(swarm: dict[str, Any] = INACTIVE, nodes: list[Any] | None = None) -> Facts:
    return Facts(
        {
            "docker": {"running": True, "swarm": swarm},
            "networks": {},
            "nodes": nodes or [],
            "ipsec": {"esp": True, "error": ""},
            "net": NET,
        }
    )


def hosts() -> dict[str, tuple[Host, Facts]]:
    return {
        "t": (Host("t", "10.0.0.1", roles=("trainer", "robomaker")), facts()),
        "w": (Host("w", "10.0.0.2", roles=("robomaker",)), facts()),
    }


def test_a_new_swarm_in_phases_with_the_token_late_bound() -> None:
    h = hosts()
    plan = plan_swarm("t", {n: f for n, (_, f) in h.items()}, "sagemaker-local", None, True)
    phases = swarm_phases("t", h, plan, {})
    said = [[(s.host, s.says) for s in p if s.says] for p in phases]
    assert said[0] == [("t", "swarm init (advertise 10.0.0.1)")]
    assert said[1] == []  # the token is read, which changes nothing
    assert said[2] == [("w", "join the swarm of t (10.0.0.1:2377)")]
    assert said[3] == []  # rotated: the token handed out is spent
    assert [(s.reports, s.says) for s in phases[4]] == [
        ("t", "node labels Sagemaker=true, Robomaker=true"),
        ("w", "node labels Robomaker=true"),
    ]
    assert phases[4][1].argv[-1] == node_of("w")  # known once w joined
    assert said[5][0][1].startswith("create encrypted overlay sagemaker-local")
    # the token: captured by one step, on stdin of the joins, in no argv
    assert [s.captures for s in phases[1]] == [JOIN_TOKEN]
    assert all(JOIN_TOKEN not in s.argv for p in phases for s in p)
    assert phases[2][0].stdin and phases[2][0].stdin["JoinToken"] == JOIN_TOKEN


def test_a_swarm_that_holds_everything_has_nothing_to_do() -> None:
    nodes = [
        {"id": "n1", "hostname": "t", "labels": {"Sagemaker": "true", "Robomaker": "true"}},
        {"id": "n2", "hostname": "w", "labels": {"Robomaker": "true"}},
    ]
    lead = {"state": "active", "is_manager": True, "node_id": "n1", "cluster_id": "c"}
    member = {"state": "active", "is_manager": False, "node_id": "n2", "cluster_id": ""}
    overlay = {"driver": "overlay", "attachable": True, "encrypted": True}
    t = Facts({**facts(lead, nodes).raw, "networks": {"sagemaker-local": overlay}})
    h = {
        "t": (Host("t", "10.0.0.1", roles=("trainer", "robomaker")), t),
        "w": (Host("w", "10.0.0.2", roles=("robomaker",)), facts(member)),
    }
    plan = plan_swarm("t", {n: f for n, (_, f) in h.items()}, "sagemaker-local", None, True)
    assert swarm_phases("t", h, plan, {}) == []


class State:
    """A host as run_phases sees it: each command run, its stdin, what it prints."""

    def __init__(self, name: str, log: list[tuple[str, str, bytes | None, bool]]) -> None:
        self.host = Host(name, "10.0.0.1")
        self.log, self.dirty, self.become = log, set[str](), None

    def run(self, command: Any, stdin: Any = None, **kw: Any) -> Result:
        line = command.display()
        self.log.append((self.host.name, line, stdin, kw.get("prints_secret", False)))
        out = "SWMTKN-1-secret" if "join-token -q worker" in line else ""
        out = f"node-{self.host.name}" if "Swarm.NodeID" in line else out
        return Result(self.host.name, line, 0, out, "", 0.0)


def test_phases_bind_the_secret_at_run_time_and_check_mode_runs_nothing() -> None:
    h = hosts()
    plan = plan_swarm("t", {n: f for n, (_, f) in h.items()}, "sagemaker-local", None, True)
    phases = swarm_phases("t", h, plan, {})
    log: list[tuple[str, str, bytes | None, bool]] = []
    members: Any = {"t": State("t", log), "w": State("w", log)}
    task = Task(name="swarm", module="docker_swarm", args={}, source="play.yml:1")
    changed: dict[str, list[str]] = {"t": [], "w": []}
    assert run_phases(phases, members, task, {"t": [], "w": []}, check=True) == {}
    assert not log
    assert run_phases(phases, members, task, changed, check=False) == {}
    join = next(entry for entry in log if entry[0] == "w" and entry[2])
    assert json.loads(join[2] or b"{}")["JoinToken"] == "SWMTKN-1-secret"
    assert all("SWMTKN" not in line for _, line, _, _ in log)
    token_reads = [e for e in log if "join-token" in e[1]]
    assert token_reads and all(secret for *_, secret in token_reads)  # never echoed
    labels = next(line for host, line, _, _ in log if "node update" in line and "node-w" in line)
    assert "--label-add Robomaker=true" in labels
    assert changed["w"] == ["join the swarm of t (10.0.0.1:2377)", "node labels Robomaker=true"]
    assert Late("join_token") == JOIN_TOKEN and isinstance(Secret("x"), Secret)


OLD = [{"node_id": "old1", "addr": "10.0.0.9:2377"}]  # the lost trainer's manager node


def orphan(node: str, reach: dict[str, str] | None) -> Facts:
    """A worker of the lost trainer's swarm; reach: what its managers answered (None: not
    asked)."""
    f = facts({"state": "active", "is_manager": False, "node_id": node, "managers": OLD})
    if reach is not None:
        f.raw["managers"] = reach
    return f


def test_hosts_left_in_a_lost_trainers_swarm_leave_it_and_form_the_new_one() -> None:
    """The trainer's host is gone for good: the new trainer and the others are still
    workers of its swarm, whose manager answers no more. Provision leaves that swarm on
    each, first, then forms the new one as on fresh hosts (docs/aws.md)."""
    gone = {"10.0.0.9:2377": "timed out"}
    h = hosts()
    h = {"t": (h["t"][0], orphan("n1", gone)), "w": (h["w"][0], orphan("n2", gone))}
    plan = plan_swarm("t", {n: f for n, (_, f) in h.items()}, "sagemaker-local", None)
    assert not plan.errors and plan.init and plan.join == ["w"]
    assert plan.leave == dict.fromkeys(
        ["t", "w"], "its managers are gone: 10.0.0.9:2377 does not answer (timed out)"
    )
    phases = swarm_phases("t", h, plan, {})
    assert [(s.host, s.argv) for s in phases[0]] == [
        ("t", ("docker", "swarm", "leave", "--force")),
        ("w", ("docker", "swarm", "leave", "--force")),
    ]
    assert phases[0][0].says.startswith("leave an abandoned swarm (its managers are gone")
    assert phases[1][0].says == "swarm init (advertise 10.0.0.1)"
    assert [s.says for s in phases[3] if s.says] == ["join the swarm of t (10.0.0.1:2377)"]

    # the new trainer leads already (provision stopped half-way): the rest join it
    lead = facts({"state": "active", "is_manager": True, "node_id": "n9"}, [{"id": "n9"}])
    plan = plan_swarm("t", {"t": lead, "w": orphan("n2", gone)}, "sagemaker-local", None)
    assert not plan.errors and not plan.init and plan.join == ["w"] and list(plan.leave) == ["w"]


def test_a_swarm_whose_manager_answers_or_was_not_asked_is_never_left() -> None:
    """A manager that answers may lead a swarm of the user's own: refused, with the fix."""
    for reach in ({"10.0.0.9:2377": ""}, None, {}):
        plan = plan_swarm(
            "t", {"t": orphan("n1", reach), "w": orphan("n2", reach)}, "sagemaker-local", None
        )
        assert not plan.leave and not plan.init
        assert "the trainer is a worker in another swarm" in plan.errors["t"]
        assert "docker swarm leave --force" in plan.errors["t"]
        lead = facts({"state": "active", "is_manager": True, "node_id": "n9"}, [{"id": "n9"}])
        plan = plan_swarm("t", {"t": lead, "w": orphan("n2", reach)}, "sagemaker-local", None)
        assert not plan.leave and "not the trainer's" in plan.errors["w"]
        assert "docker swarm leave --force" in plan.errors["w"]


def test_a_lost_managers_address_taken_by_the_new_trainer_is_gone() -> None:
    """EC2 gives the new trainer the lost one's private address: the old manager's address
    answers, but from a host that is not that node."""
    old = [{"node_id": "old1", "addr": "10.0.0.1:2377"}]  # the new trainer's address
    w = facts({"state": "active", "is_manager": False, "node_id": "n2", "managers": old})
    w.raw["managers"] = {"10.0.0.1:2377": ""}  # it answers: another swarm's manager
    for t in (facts(), facts({"state": "active", "is_manager": True, "node_id": "n9"})):
        plan = plan_swarm("t", {"t": t, "w": w}, "sagemaker-local", None)
        assert plan.join == ["w"] and "10.0.0.1:2377 is now the trainer" in plan.leave["w"]
    same = facts({"state": "active", "is_manager": True, "node_id": "old1"}, [{"id": "n2"}])
    plan = plan_swarm("t", {"t": same, "w": w}, "sagemaker-local", None)
    assert not plan.leave and not plan.join and not plan.errors  # still its member

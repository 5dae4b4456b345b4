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


def test_hosts_left_in_a_lost_trainers_swarm_are_refused_with_the_fix() -> None:
    """The trainer's host is gone for good (a spot trainer EC2 took back): the new trainer
    and the others are still workers of its swarm, which has no manager now. Provision
    refuses them, naming the command that frees them (docs/aws.md)."""
    orphan = {"state": "active", "is_manager": False, "node_id": "n2", "cluster_id": ""}
    plan = plan_swarm("t", {"t": facts(orphan), "w": facts(orphan)}, "sagemaker-local", None)
    assert "the trainer is a worker in another swarm" in plan.errors["t"]
    assert "docker swarm leave --force" in plan.errors["t"]
    lead = {"state": "active", "is_manager": True, "node_id": "n9", "cluster_id": "new"}
    plan = plan_swarm("t", {"t": facts(lead), "w": facts(orphan)}, "sagemaker-local", None)
    assert (
        "not the trainer's" in plan.errors["w"]
        and "docker swarm leave --force" in (plan.errors["w"])
    )

"""What the controller sees of the fleet: each host's agent status (typed, parsed once by
agent_client), or why it could not be asked; and, with a run record, the run's slots (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drfleet_agent.contract import ContainerStatus, HostStatus

from drfleet.errors import host_fields
from drfleet.names import Run
from drfleet.runs import placement, runstate

# What to do when the trainer's host is taken back (status says it too).
TRAINER_LOST = (
    "when it is gone, `drfleet up` and `drfleet provision` replace it (provision moves the "
    "other hosts from its swarm to the new trainer's); then `drfleet increment-training "
    "--checkpoint last` and "
    "`drfleet train` go on from the last checkpoint, if the model is in S3 that outlives the "
    "host (DR_CLOUD=aws or remote; minio's data is on the trainer's disk)"
)


@dataclass
class HostReport:
    name: str
    reachable: bool
    status: HostStatus | None = None  # None: not asked (see error)
    error: str = ""  # what is wrong, without the host's name
    dropped: list[str] | None = None  # told just now that its slots moved: what it dropped
    fix: str = ""  # what to do about the error

    @property
    def containers(self) -> list[ContainerStatus]:
        return self.status.containers if self.status else []

    def to_json(self) -> dict[str, Any]:
        if self.status is None:
            return {"reachable": self.reachable, "error": self.error, "fix": self.fix or None}

        doc: dict[str, Any] = {**host_fields(True, None), **self.status.to_json()}
        if self.dropped is not None:
            doc["dropped"] = self.dropped
        return doc


@dataclass
class FleetReport:
    hosts: dict[str, HostReport]
    run: dict[str, Any] | None = None  # run_summary, with a run record

    @property
    def healthy(self) -> bool:
        return all(h.reachable and h.status is not None for h in self.hosts.values())

    def locate(self, name: str) -> tuple[str, ContainerStatus] | None:
        for host, r in self.hosts.items():
            for c in r.containers:
                if c.name == name:
                    return host, c
        return None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"hosts": {h: r.to_json() for h, r in self.hosts.items()}}
        if self.run is not None:
            doc["run"] = self.run
        return doc


def notices(hosts: dict[str, HostReport]) -> dict[str, dict[str, str]]:
    """host -> EC2's spot interruption notice its agent reports ({action, time}) (pure)."""
    out = {}
    for h, r in hosts.items():
        notice = r.status.agent.interruption if r.status else None
        if notice:
            out[h] = notice
    return out


def leaving(state: runstate.RunState, hosts: dict[str, HostReport]) -> set[str]:
    """The hosts with an interruption notice that still hold slots of the run's plan: what
    `status --converge` and `train --rebalance` move before EC2 takes them."""
    return set(placement.lost(state.plan, set(notices(hosts))))


def _leaving(state: runstate.RunState, notice: dict[str, dict[str, str]]) -> dict[str, Any]:
    """host -> its notice, the slots still planned there, and whether it runs the trainer."""
    slots = placement.lost(state.plan, set(notice))
    return {
        h: {**n, "slots": slots.get(h, []), "trainer": h == state.plan.trainer}
        for h, n in sorted(notice.items())
        if h in slots or h == state.plan.trainer
    }


def run_summary(state: runstate.RunState, hosts: dict[str, HostReport]) -> dict[str, Any]:
    """Slots as planned, each with its state; the slots of unreachable hosts are lost; the
    slots of a host EC2 is about to interrupt are leaving (pure)."""
    down = {h for h, r in hosts.items() if not r.reachable}
    notice = notices(hosts)
    slots = {}
    for w in state.plan.workers:
        report = hosts.get(w.host)
        here = {c.name: c for c in report.containers} if report else {}
        found = here.get(Run(state.run_id or "0").robomaker(w.slot))
        slots[str(w.slot)] = {
            "host": w.host,
            "world": w.world,
            "state": "lost" if w.host in down else (found.state.value if found else "missing"),
        }
    return {
        "run_id": state.run_id,
        "generation": state.generation,
        "trainer": {
            "host": state.plan.trainer,
            "state": "lost" if state.plan.trainer in down else "ok",
        },
        "slots": slots,
        "lost": placement.lost(state.plan, down),
        "leaving": _leaving(state, notice),
        "dropped": {h: r.dropped for h, r in hosts.items() if r.dropped},
        "fence_pending": sorted(
            set(state.fence) - {h for h, r in hosts.items() if r.dropped is not None}
        ),
    }

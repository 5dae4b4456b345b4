"""Where every worker runs, and why: a pure function of the training config and capacities.

Cost: `worker_vcpus` per robomaker (default 4; `opengl_worker_vcpus`, default 2, on OpenGL
hosts), and `trainer_vcpus` reserved on the trainer (default 4): a c5.4xlarge trainer takes
the trainer and 3 workers. Hosts are never oversubscribed, and workers are spread so hosts are
evenly loaded, since the slowest worker gates every iteration."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from drfleet.errors import ConfigError
from drfleet.inventory import Host

VIDEO_BASE = 8080  # worker slot k publishes its web_video_server on 8079 + k


@dataclass(frozen=True)
class Capacity:
    host: str
    vcpus: int
    memory_mb: int = 0
    gpus: int = 0
    opengl: bool = False
    trainer: bool = False
    robomaker: bool = True
    worker_vcpus: int = 4
    trainer_vcpus: int = 4

    @property
    def cost(self) -> int:
        return self.worker_vcpus

    @property
    def slots(self) -> int:
        """How many workers fit without oversubscribing."""
        if not self.robomaker:
            return 0
        free = self.vcpus - (self.trainer_vcpus if self.trainer else 0)
        return max(0, free // self.cost)


@dataclass(frozen=True)
class Placement:
    slot: int
    host: str
    world: str
    episodes: int
    config_file: str
    video_port: int


@dataclass(frozen=True)
class Plan:
    trainer: str
    workers: list[Placement]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "trainer": {"host": self.trainer},
            "workers": [asdict(w) for w in self.workers],
            "warnings": self.warnings,
            "notes": self.notes,
        }

    def by_host(self) -> dict[str, list[Placement]]:
        out: dict[str, list[Placement]] = {}
        for w in self.workers:
            out.setdefault(w.host, []).append(w)
        return out


def capacity(host: Host, facts: dict[str, Any] | None = None) -> Capacity:
    """Declared capacity (vcpus, memory_mb, gpus, or a known instance_type) wins over facts."""
    f = facts or {}
    vcpus = host.declared("vcpus") or f.get("vcpus")
    if not vcpus:
        raise ConfigError(
            f"capacity of {host.name} is unknown",
            where=host.source,
            fix="set vcpus (or a known instance_type) in the inventory, or make "
            "the host reachable so drfleet can ask it",
        )
    gpus = host.declared("gpus")
    if gpus is None:
        gpus = len(f.get("gpus") or [])
    opengl_cost = int(host.vars.get("opengl_worker_vcpus", 2))
    return Capacity(
        host=host.name,
        vcpus=int(vcpus),
        memory_mb=int(host.declared("memory_mb") or f.get("memory_mb") or 0),
        gpus=int(gpus),
        opengl=host.opengl,
        trainer="trainer" in host.roles,
        robomaker="robomaker" in host.roles,
        worker_vcpus=opengl_cost if host.opengl else int(host.vars.get("worker_vcpus", 4)),
        trainer_vcpus=int(host.vars.get("trainer_vcpus", 4)),
    )


def place(
    workers: int,
    caps: list[Capacity],
    worlds: list[str],
    shares: list[int],
    config_files: list[str],
) -> Plan:
    """Assigns slots 1..workers to hosts: each next slot to the least loaded host that still
    has room (ties: fewer workers, then inventory order). Refuses when they do not fit."""
    trainers = [c for c in caps if c.trainer]
    if len(trainers) != 1:
        raise ConfigError(
            f"training needs exactly one host with the trainer role (found {len(trainers)})",
            fix="add `roles: [trainer, robomaker]` to one host in the inventory",
        )
    total = sum(c.slots for c in caps)
    if workers > total:
        detail = ", ".join(
            f"{c.host}: {c.slots} ({c.vcpus} vCPUs"
            f"{f' - {c.trainer_vcpus} for the trainer' if c.trainer else ''}"
            f", {c.cost} per worker)"
            for c in caps
            if c.robomaker
        )
        missing = sum(c.cost for c in caps[:1]) * (workers - total)
        if total == 0:
            raise ConfigError(
                f"no host has room for even one worker ({detail})",
                fix="add a host with more vCPUs; on a small test machine you may lower the "
                "costs in the inventory (all: vars: {worker_vcpus: 1, trainer_vcpus: 1}), "
                "knowing the simulation will then run slower than real time",
            )
        raise ConfigError(
            f"{workers} workers do not fit: this inventory has room for {total} ({detail})",
            fix=f"use DR_WORKERS={total} (or --workers {total}), or add hosts with about "
            f"{missing} more vCPUs; never oversubscribe, the slowest worker gates every "
            "iteration",
        )
    used = {c.host: 0 for c in caps}
    order = {c.host: i for i, c in enumerate(caps)}
    placements = []
    for slot in range(1, workers + 1):
        best = min(
            (c for c in caps if used[c.host] < c.slots),
            key=lambda c: ((used[c.host] + 1) / c.slots, used[c.host], order[c.host]),
        )
        used[best.host] += 1
        placements.append(
            Placement(
                slot,
                best.host,
                worlds[slot - 1],
                shares[slot - 1],
                config_files[slot - 1],
                VIDEO_BASE + slot - 1,
            )
        )
    return Plan(trainers[0].host, placements)


def suggest(caps: list[Capacity]) -> int:
    return sum(c.slots for c in caps)

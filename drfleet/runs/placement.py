"""Where every worker runs, and why: a pure function of the training config and capacities.

Cost: `worker_vcpus` per robomaker (default 4; `opengl_worker_vcpus`, default 2, on OpenGL
hosts), and `trainer_vcpus` reserved on the trainer (default 4): a c5.4xlarge trainer takes
the trainer and 3 workers. Hosts are never oversubscribed, and workers are spread so hosts are
evenly loaded, since the slowest worker gates every iteration."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from drfleet.errors import ConfigError
from drfleet.hosts.hostfacts import Facts
from drfleet.hosts.inventory import Host

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
    publish_address: str = "127.0.0.1"  # where its containers' ports listen (inventory)

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


def capacity(host: Host, facts: Facts | None = None) -> Capacity:
    """Declared capacity (vcpus, memory_mb, gpus, or a known instance_type) wins over facts."""
    f = facts or Facts({})
    vcpus = host.declared("vcpus") or f.vcpus
    if not vcpus:
        raise ConfigError(
            f"capacity of {host.name} is unknown",
            where=host.source,
            fix="set vcpus (or a known instance_type) in the inventory, or make "
            "the host reachable so drfleet can ask it",
        )
    gpus = host.declared("gpus")
    if gpus is None:
        gpus = len(f.gpus)
    opengl_cost = int(host.vars.get("opengl_worker_vcpus", 2))
    return Capacity(
        host=host.name,
        vcpus=int(vcpus),
        memory_mb=int(host.declared("memory_mb") or f.memory_mb),
        gpus=int(gpus),
        opengl=host.opengl,
        trainer="trainer" in host.roles,
        robomaker="robomaker" in host.roles,
        worker_vcpus=opengl_cost if host.opengl else int(host.vars.get("worker_vcpus", 4)),
        trainer_vcpus=int(host.vars.get("trainer_vcpus", 4)),
        publish_address=host.publish_address,
    )


def place(
    workers: int,
    caps: list[Capacity],
    worlds: list[str],
    shares: list[int],
    config_files: list[str],
    video_base: int = VIDEO_BASE,
) -> Plan:
    """Assigns slots 1..workers to hosts: each next slot to the least loaded host that still
    has room (ties: fewer workers, then inventory order). Refuses when they do not fit.
    Slot k publishes its video on video_base + k - 1 (run N's base is N * 100 higher)."""
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
                video_base + slot - 1,
            )
        )
    return Plan(trainers[0].host, placements)


def suggest(caps: list[Capacity]) -> int:
    return sum(c.slots for c in caps)


def from_json(doc: dict[str, Any]) -> Plan:
    return Plan(
        doc["trainer"]["host"],
        [Placement(**w) for w in doc["workers"]],
        list(doc.get("warnings", [])),
        list(doc.get("notes", [])),
    )


def lost(plan: Plan, down: set[str]) -> dict[str, list[int]]:
    """host -> the slots planned there, for the hosts that are down."""
    return {h: [w.slot for w in ws] for h, ws in plan.by_host().items() if h in down}


def rebalance(plan: Plan, caps: list[Capacity], down: set[str]) -> tuple[Plan, dict[int, str]]:
    """Moves the slots of hosts that are down to hosts with room, keeping everything else of
    each placement (slot, world, episodes, params file, video port), so multi-config and
    DOCKER_REPLICA_SLOT stay as they were. Returns the new plan and slot -> new host. All
    lost slots move or none: the trainer waits for every slot's share of episodes."""
    if plan.trainer in down:
        raise ConfigError(
            f"the trainer host {plan.trainer} is down; its slots cannot be moved",
            fix=f"bring {plan.trainer} back (its agent restarts the trainer), or `drfleet stop` "
            "and train again from the last checkpoint (DR_LOCAL_S3_PRETRAINED)",
        )
    usable = [c for c in caps if c.host not in down]
    moving = [w for w in plan.workers if w.host in down]
    if not moving:
        return plan, {}
    used = {c.host: 0 for c in usable}
    for w in plan.workers:
        if w.host in used:
            used[w.host] += 1
    order = {c.host: i for i, c in enumerate(usable)}
    if len(moving) > sum(max(0, c.slots - used[c.host]) for c in usable):
        raise _no_room(moving, usable, used, down)
    moved: dict[int, str] = {}
    for w in moving:
        room = [c for c in usable if used[c.host] < c.slots]
        best = min(room, key=lambda c: ((used[c.host] + 1) / c.slots, used[c.host], order[c.host]))
        used[best.host] += 1
        moved[w.slot] = best.host
    workers = [replace(w, host=moved.get(w.slot, w.host)) for w in plan.workers]
    return Plan(plan.trainer, workers, plan.warnings, plan.notes), moved


def _no_room(
    moving: list[Placement], usable: list[Capacity], used: dict[str, int], down: set[str]
) -> ConfigError:
    free = sum(max(0, c.slots - used[c.host]) for c in usable)
    detail = ", ".join(f"{c.host} {used[c.host]} of {c.slots}" for c in usable if c.robomaker)
    short = len(moving) - free
    per = max((c.cost for c in usable if c.robomaker), default=4)
    slots = ", ".join(str(w.slot) for w in moving)
    return ConfigError(
        f"no capacity left for the {len(moving)} lost workers (slots {slots} on "
        f"{', '.join(sorted(down))}): the other hosts have room for {free} more "
        f"(workers placed: {detail}); nothing was moved",
        fix=f"add hosts with about {short * per} more vCPUs for {short} more workers to the "
        "inventory, provision them and run `drfleet train --rebalance` again; or bring "
        f"{', '.join(sorted(down))} back (its agent restarts its workers)",
    )

"""Gazebo's statistics read from the run's workers at once (`drfleet robomaker-stats`): each
worker's container asked over an SSH session of its own, all side by side, so reading five
workers takes as long as reading one."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from drfleet.errors import DrfleetError
from drfleet.hosts.inventory import Host
from drfleet.hosts.remote import Options, session
from drfleet.runs import simstats
from drfleet.shell import cmd


@dataclass(frozen=True)
class Target:
    slot: int
    host: Host
    container: str
    world: str


def read(targets: list[Target], options: Options, seconds: float) -> list[simstats.WorkerStats]:
    """Each target's statistics over `seconds`, in the order given."""
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        return list(pool.map(lambda t: _one(t, options, seconds), targets))


def _one(t: Target, options: Options, seconds: float) -> simstats.WorkerStats:
    argv = ("docker", "exec", t.container, *simstats.command(seconds))
    try:
        with session(t.host, options) as s:
            res = s.run(cmd(*argv), become=True, check=False, timeout=seconds + 60)
    except DrfleetError as exc:
        return simstats.summarize(t.slot, t.host.name, t.container, t.world, [], exc.message)
    samples = simstats.parse(res.stdout)
    why = "" if samples else (res.tail(3) or f"`gz topic` exited {res.exit_code}")
    return simstats.summarize(t.slot, t.host.name, t.container, t.world, samples, why)

"""Gazebo's statistics read from the run's workers at once (`drfleet robomaker-stats`): each
worker's container asked over an SSH session of its own, all side by side, so reading five
workers takes as long as reading one."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from drfleet.errors import DrfleetError
from drfleet.hosts.inventory import Host, Inventory
from drfleet.hosts.remote import Options, session
from drfleet.runs import converge, runstate, simstats, training
from drfleet.runs.execute import opened
from drfleet.shell import cmd


@dataclass(frozen=True)
class Target:
    slot: int
    host: Host
    container: str
    world: str


def targets(
    inv: Inventory, options: Options, env_dir: Path, worker: int = 0
) -> tuple[list[Target], list[simstats.WorkerStats]]:
    """The run's workers (only `worker` when given) where the hosts' agents say they run,
    and, summed up as such, those no host runs."""
    state = runstate.load(env_dir)
    if state is None:
        raise DrfleetError(
            f"no run was started from {env_dir.resolve()}", fix="`drfleet train` starts one"
        )
    slots = [w for w in state.plan.workers if not worker or w.slot == worker]
    if not slots:
        have = ", ".join(str(w.slot) for w in state.plan.workers)
        raise DrfleetError(f"the run has no worker {worker}; its workers are {have}")
    run = training.run_of(env_dir)
    hosts = {w.host: inv.hosts[w.host] for w in slots if w.host in inv.hosts}
    unreached: dict[str, str] = {}
    with opened(hosts, options) as sessions:
        held = converge.statuses(dict(sessions), sorted(hosts), options.limit, unreached)
    found, missing = [], []
    for w in slots:
        name = run.robomaker(w.slot)
        where = [h for h, st in held.items() if any(c.name == name for c in st.containers)]
        if where:
            found.append(Target(w.slot, inv.hosts[where[0]], name, w.world))
        else:
            why = (
                f"{w.host} cannot be reached: {unreached[w.host]}"
                if w.host in unreached
                else f"not running on {w.host} (see `drfleet status`)"
            )
            missing.append(simstats.summarize(w.slot, w.host, name, w.world, [], why))
    return found, missing


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

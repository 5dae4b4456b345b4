"""Gazebo's statistics per worker, as `drfleet robomaker-stats` reads them (pure): the command
run in each robomaker container, its output parsed, each worker summed up.

DRfC's dr-get-robomaker-stats runs `gz stats` in the container (bin/scripts_wrapper.sh), Gazebo
classic's command (gazebo-classic tools/gz.cc, StatsCommand). The simapp DRfC runs now (6.x,
deepracer-simapp docker/Dockerfile.upstream) installs Gazebo Harmonic, whose `gz` (gz-tools
src/gz.in) has no `stats` command and prints its usage instead. Harmonic's simulator publishes
the same figures on the gz-transport topic `/world/<world>/stats` (gz.msgs.WorldStatistics);
`gz topic -e --json-output` prints each message as one line of protobuf's JSON (gz-transport
src/cmd/gz.cc, cmdTopicEcho): int64 and uint64 fields as strings, fields at their default
left out."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

NOT_RUNNING = 3  # the command's exit status when no world publishes statistics
NO_WORLD = "no Gazebo world publishes its statistics: the simulation is not running (yet)"


def command(seconds: float) -> tuple[str, ...]:
    """The command for one container: the world's stats topic found (`gz topic -l`), then
    echoed for `seconds`."""
    script = (
        't=$(gz topic -l | grep -m1 -E "^/world/[^/]+/stats$") || '
        f'{{ echo "{NO_WORLD}" >&2; exit {NOT_RUNNING}; }}; '
        f'exec gz topic -e --json-output -t "$t" -d {seconds:g}'
    )
    return ("bash", "-c", script)


@dataclass(frozen=True)
class Sample:
    sim_time: float  # seconds
    real_time: float
    factor: float  # the real-time factor Gazebo reports
    paused: bool
    iterations: int


def _seconds(doc: Any) -> float:
    doc = doc if isinstance(doc, dict) else {}
    return int(doc.get("sec") or 0) + int(doc.get("nsec") or 0) / 1e9


def parse(text: str) -> list[Sample]:
    """The messages `gz topic -e --json-output` printed, one per line; other lines (gz's own
    warnings) are left out."""
    out = []
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if not isinstance(doc, dict) or "realTime" not in doc:
            continue
        try:
            out.append(
                Sample(
                    sim_time=_seconds(doc.get("simTime")),
                    real_time=_seconds(doc.get("realTime")),
                    factor=float(doc.get("realTimeFactor") or 0.0),
                    paused=bool(doc.get("paused", False)),
                    iterations=int(doc.get("iterations") or 0),
                )
            )
        except (TypeError, ValueError):
            continue
    return out


@dataclass(frozen=True)
class WorkerStats:
    slot: int
    host: str
    container: str
    world: str
    factor: float | None  # simulated seconds per real second over the samples
    sim_time: float | None  # seconds simulated since the world started
    paused: bool | None
    samples: int
    error: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def summarize(
    slot: int, host: str, container: str, world: str, samples: list[Sample], error: str = ""
) -> WorkerStats:
    """One worker's figures: the real-time factor measured over the samples (Gazebo's own
    figure from the last one when they span no time), or why there are none."""
    if not samples:
        return WorkerStats(
            slot, host, container, world, None, None, None, 0, error or "no statistics came"
        )
    first, last = samples[0], samples[-1]
    span = last.real_time - first.real_time
    factor = (last.sim_time - first.sim_time) / span if span > 0 else last.factor
    return WorkerStats(
        slot, host, container, world, round(factor, 3), last.sim_time, last.paused, len(samples)
    )


def line(w: WorkerStats) -> str:
    where = f"worker {w.slot} on {w.host} ({w.world})"
    if w.factor is None:
        return f"{where}: {w.error}"
    paused = ", paused" if w.paused else ""
    return (
        f"{where}: real-time factor {w.factor:.2f}, {w.sim_time:.1f} s simulated{paused} "
        f"({w.samples} samples)"
    )

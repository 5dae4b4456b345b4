"""What the commands that change hosts return (train, --rebalance, stop, evaluate): typed
objects the command line renders as text (`lines`) or as its --json document (`as_json`,
checked against docs/schemas/). Pure."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from drfleet_agent.contract import HostStatus

from drfleet.errors import DrfleetError, host_fields
from drfleet.runs.placement import Plan


@dataclass(frozen=True)
class HostResult:
    """One host's part: told, or why not (reachable, error, fix: errors.host_fields)."""

    ok: bool
    reachable: bool = True
    error: str | None = None
    fix: str | None = None
    containers: dict[str, str] | None = None  # name -> state, once told
    would_stop: list[str] | None = None  # stop --check

    @classmethod
    def of(
        cls,
        unreachable: bool,
        error: DrfleetError | None,
        status: HostStatus | None,
        with_containers: bool = True,
    ) -> HostResult:
        """A host's outcome (remote.Outcome's fields): told, and its agent's status after."""
        said = host_fields(not unreachable, error)
        states = None
        if with_containers and error is None:
            states = {c.name: c.state.value for c in (status.containers if status else [])}
        return cls(
            error is None, bool(said["reachable"]), _str(said["error"]), _str(said["fix"]), states
        )

    @classmethod
    def failed(cls, reachable: bool, error: DrfleetError | str | None) -> HostResult:
        said = host_fields(reachable, error)
        return cls(False, reachable, _str(said["error"]), _str(said["fix"]))

    def as_json(self, unreachable: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok}
        if unreachable and not self.ok:
            out["unreachable"] = not self.reachable
        out.update(reachable=self.reachable, error=self.error, fix=self.fix)
        if self.containers is not None:
            out["containers"] = self.containers
        if self.would_stop is not None:
            out["would_stop"] = self.would_stop
        return out

    def line(self, host: str) -> str:
        state = ", ".join(f"{n} {st}" for n, st in (self.containers or {}).items())
        return f"{host}: {state or self.error or ''}"


def _str(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass
class Told:
    """The hosts a command told, in order; failed when any could not be."""

    hosts: dict[str, HostResult] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return any(not r.ok for r in self.hosts.values())

    def hosts_json(self, unreachable: bool = True) -> dict[str, Any]:
        return {h: r.as_json(unreachable) for h, r in self.hosts.items()}

    def host_lines(self) -> Iterator[str]:
        for h, r in self.hosts.items():
            yield r.line(h)


@dataclass
class TrainResult(Told):
    run: str = "0"
    plan: Plan | None = None
    uploaded: list[str] = field(default_factory=list)
    resumed: bool = False
    generation: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "plan": self.plan.as_json() if self.plan else None,
            "uploaded": self.uploaded,
            "resumed": self.resumed,
            "generation": self.generation,
            "hosts": self.hosts_json(),
        }

    def lines(self) -> Iterator[str]:
        if self.resumed:
            yield "this run was live with the same files: nothing uploaded; hosts converged"
        yield from self.host_lines()


@dataclass
class RebalanceResult(Told):
    moved: dict[str, tuple[str, str]] = field(default_factory=dict)  # slot -> (from, to)
    down: list[str] = field(default_factory=list)
    plan: Plan | None = None
    generation: int | None = None
    leaving: dict[str, dict[str, str]] = field(default_factory=dict)  # host -> EC2's notice

    def as_json(self) -> dict[str, Any]:
        return {
            "moved": {s: {"from": a, "to": b} for s, (a, b) in self.moved.items()},
            "down": self.down,
            "leaving": self.leaving,
            "plan": self.plan.as_json() if self.plan else None,
            "generation": self.generation,
            "hosts": self.hosts_json(),
        }

    def lines(self) -> Iterator[str]:
        if not self.moved:
            yield "nothing to move: every host of the run answers, none is being interrupted"
        for slot, (a, b) in self.moved.items():
            why = "unreachable"
            if a in self.leaving:
                n = self.leaving[a]
                why = f"EC2 spot interruption: {n['action']} at {n['time']}"
            yield f"slot {slot}: {a} ({why}) -> {b}"
        yield from self.host_lines()


@dataclass
class StopResult(Told):
    run: str | None = None  # None: every run (--all)
    check: bool = False

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"run": self.run}
        if self.check:
            out["check"] = True
        out["hosts"] = self.hosts_json(unreachable=False)
        return out

    def lines(self) -> Iterator[str]:
        what = "every run" if self.run is None else f"run {self.run}"
        for h, r in self.hosts.items():
            if not r.ok:
                yield f"{h}: {r.error}" + (f"\n  fix: {r.fix}" if r.fix else "")
            elif self.check:
                yield f"{h}: would stop {', '.join(r.would_stop or []) or 'nothing'}"
            else:
                yield f"{h}: stopped {what}"


@dataclass
class EvalStarted:
    """evaluate: where the evaluation runs (or, dry run, where its files were written), the
    eval params' key and where its metrics will be; with --wait, its results too."""

    run: str
    params: str
    metrics: str
    trials: int
    host: str = ""
    warnings: list[str] = field(default_factory=list)
    cloned: int | None = None  # objects copied to <prefix>-E (-c)
    generation: int | None = None
    dry_run: str | None = None  # the folder written instead
    results: EvalResults | None = None
    failed: bool = False

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run": self.run,
            "params": self.params,
            "metrics": self.metrics,
            "trials": self.trials,
            "host": self.host,
            "warnings": self.warnings,
        }
        if self.cloned is not None:
            out["cloned"] = self.cloned
        if self.dry_run is not None:
            out["dry_run"] = self.dry_run
        else:
            out["generation"] = self.generation
        if self.results is not None:
            out.update(self.results.as_json())
        return out

    def lines(self) -> Iterator[str]:
        for w in self.warnings:
            yield f"warning: {w}"
        if self.results is not None:
            yield from self.results.lines()
        elif self.dry_run is not None:
            yield f"dry run: eval params and {self.host}'s desired state in {self.dry_run}"
        else:
            yield (
                f"evaluating on {self.host}: params s3://.../{self.params}, results in "
                f"{self.metrics} (`drfleet evaluate --results`)"
            )


@dataclass
class EvalResults:
    """The evaluation's metrics as the simapp writes them, a row per trial, and a summary."""

    metrics: str
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    failed: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "rows": self.rows, "summary": self.summary}

    def lines(self) -> Iterator[str]:
        yield self.metrics
        yield (
            f"{'trial':>5}  {'status':<16} {'progress':>8} {'lap time':>9} {'off track':>9} "
            f"{'crashes':>7} {'resets':>6}"
        )
        for r in self.rows:
            yield (
                f"{r['trial']:>5}  {r['status']:<16} {r['progress']:>7.1f}% "
                f"{r['lap_time']:>8.3f}s {r['off_track']:>9} {r['crashes']:>7} {r['resets']:>6}"
            )
        s = self.summary
        best = f"{s['best_lap_time']:.3f}s" if s["best_lap_time"] is not None else "-"
        yield (
            f"{s['laps_completed']} of {s['trials']} laps completed, best {best}, "
            f"mean progress {s['mean_progress']}%"
        )


@dataclass
class EvalStopped:
    stopped: list[str]
    failed: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"stopped": self.stopped}

    def lines(self) -> Iterator[str]:
        if self.stopped:
            yield f"evaluation removed from {', '.join(self.stopped)}"
        else:
            yield "no evaluation runs"

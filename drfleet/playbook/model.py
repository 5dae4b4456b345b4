"""Plain data for playbooks, what modules decide, and what the engine reports."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from drfleet.shell import Command

StdinSource = bytes | Callable[[], Iterable[bytes]] | None


@dataclass(frozen=True)
class Step:
    """One remote command. `unless` is a guard: when it succeeds, the step is not needed."""

    command: Command
    stdin: StdinSource = None
    unless: Command | None = None
    timeout: float | None = 1800
    become: bool | None = None


@dataclass(frozen=True)
class Late:
    """A value that only an earlier step of the same fleet task learns (its output), bound
    when the step that needs it runs (as pyinfra's function commands are): the swarm's join
    token, a new node's id. A secret one is never in plain data, never on a command line
    and never echoed; where a step is shown, it stands as <name>."""

    name: str
    secret: bool = True


@dataclass(frozen=True)
class FleetStep:
    """One command of a fleet task, on `host`. argv and the JSON document on stdin may hold
    Late values; `captures` names the Late its stdout becomes. `says`: the change as the
    recap says it, in `reports`'s line (default: host's); empty for a step that only reads.
    dirty: the fact sections it changes. fatal: its failure ends the task for every host
    (else only its own host's steps stop)."""

    host: str
    says: str
    argv: tuple[str | Late, ...]
    stdin: dict[str, Any] | None = None
    captures: Late | None = None
    dirty: frozenset[str] = frozenset()
    reports: str = ""
    timeout: float | None = 1800
    fatal: bool = True
    secret_output: bool = False

    def needs(self) -> set[Late]:
        """The Late values it cannot run without."""
        found = {a for a in self.argv if isinstance(a, Late)}
        return found | {v for v in (self.stdin or {}).values() if isinstance(v, Late)}


Phase = tuple[FleetStep, ...]  # steps of one phase run side by side; phases run in order


@dataclass
class Change:
    steps: list[Step]
    msg: str
    diff: str = ""


class ModuleFailure(Exception):
    """A module refuses (bad facts, unsupported host): the message says what to do."""


@dataclass
class Needs:
    """Facts a task needs: probe sections and the files, units and users it looks at."""

    sections: set[str] = field(default_factory=set)
    files: set[str] = field(default_factory=set)
    contents: set[str] = field(default_factory=set)
    units: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            self.sections | other.sections,
            self.files | other.files,
            self.contents | other.contents,
            self.units | other.units,
            self.users | other.users,
        )

    def params(self) -> dict[str, Any]:
        return {
            "sections": sorted(self.sections),
            "files": sorted(self.files),
            "contents": sorted(self.contents),
            "units": sorted(self.units),
            "users": sorted(self.users),
        }


@dataclass(frozen=True)
class Task:
    name: str
    module: str
    args: dict[str, Any]
    source: str  # file:line
    when: str | None = None
    notify: tuple[str, ...] = ()
    become: bool | None = None
    ignore_errors: bool = False


@dataclass(frozen=True)
class Play:
    name: str
    hosts: str
    vars: dict[str, Any]
    tasks: tuple[Task, ...]
    handlers: tuple[Task, ...]
    source: str
    become: bool | None = None
    # below the inventory's group and host vars (Ansible's role defaults); `vars` above them
    defaults: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Playbook:
    path: str
    plays: tuple[Play, ...]


@dataclass
class TaskResult:
    name: str
    status: str  # ok | changed | failed | skipped
    msg: str = ""
    diff: str = ""
    commands: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    def as_json(self, check: bool, diff: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "status": self.status,
            "msg": self.msg,
            "elapsed_s": round(self.elapsed, 3),
        }
        if check or diff:
            out["commands"] = self.commands
            if self.diff:
                out["diff"] = self.diff
        return out


@dataclass
class PlayReport:
    host: str
    tasks: list[TaskResult] = field(default_factory=list)
    unreachable: bool = False
    error: str = ""  # where and what, without the fix
    elapsed: float = 0.0
    fix: str = ""

    def count(self, status: str) -> int:
        return sum(1 for t in self.tasks if t.status == status)

    @property
    def failed(self) -> bool:
        return self.unreachable or self.count("failed") > 0

    def as_json(self, check: bool, diff: bool = False) -> dict[str, Any]:
        return {
            "ok": self.count("ok"),
            "changed": self.count("changed"),
            "failed": self.count("failed"),
            "skipped": self.count("skipped"),
            "unreachable": self.unreachable,
            "elapsed_s": round(self.elapsed, 3),
            "reachable": not self.unreachable,
            "error": self.error or None,
            "fix": self.fix or None,
            "tasks": [t.as_json(check, diff) for t in self.tasks],
        }

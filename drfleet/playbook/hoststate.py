"""What the runner keeps of each host while a playbook runs (HostState), the run's options,
and the part of the runner that fleet tasks may use (FleetRunner): fleet.py and image_relay
import these, never the runner itself, so no import circle runs through the runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from drfleet.hosts.hostfacts import Facts
from drfleet.hosts.inventory import Host
from drfleet.hosts.remote import Options, Session
from drfleet.playbook.model import Needs, PlayReport
from drfleet.shell import Command


@dataclass
class RunOptions:
    check: bool = False
    remote: Options = field(default_factory=Options)
    extra_vars: dict[str, Any] = field(default_factory=dict)
    images_from: str = "pull"


@dataclass
class HostState:
    host: Host
    report: PlayReport
    session: Session | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    asked: Needs = field(default_factory=Needs)
    dirty: set[str] = field(default_factory=set)
    pending: list[str] = field(default_factory=list)
    stopped: bool = False  # failed or unreachable: no more tasks
    become: bool | None = None

    @property
    def typed(self) -> Facts:
        """The facts gathered so far, read through their types."""
        return Facts(self.facts)

    def run(self, command: Command, **kw: Any) -> Any:
        assert self.session is not None
        return self.session.run(command, **kw)


class FleetRunner(Protocol):
    """The runner's public API for fleet tasks (playbook/fleet.py)."""

    options: RunOptions
    trainer_name: str | None

    def progress(self, st: HostState, text: str) -> None: ...

    def meter(self, st: HostState, text: str) -> None: ...

    def ensure_facts(self, st: HostState, needs: Needs) -> None: ...

    def peer_state(self, name: str) -> HostState: ...

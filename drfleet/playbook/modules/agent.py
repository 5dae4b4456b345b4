"""Deploys the host agent: the bundle and its systemd unit, restarted only when they changed."""

from __future__ import annotations

import hashlib
from functools import cache
from typing import TYPE_CHECKING, Any

from drfleet.hosts import agent_bundle
from drfleet.names import AGENT_PYZ as PYZ
from drfleet.names import AGENT_UNIT as UNIT
from drfleet.names import STATE_DIR
from drfleet.playbook.model import Change, ModuleFailure, Needs, Step
from drfleet.playbook.modules.base import Arg, Module
from drfleet.playbook.modules.files import atomic_write
from drfleet.shell import cmd

if TYPE_CHECKING:
    from drfleet.hosts.hostfacts import Facts
    from drfleet.playbook.context import HostContext


@cache
def bundle() -> bytes:
    return agent_bundle.cached()


class AgentModule(Module):
    name = "agent"
    spec = {
        "python": Arg(default="/usr/bin/python3"),
        "state_dir": Arg(default=STATE_DIR),
        "ec2_notices": Arg(types=(bool,), default=False),
    }
    touches = frozenset({"files", "units"})

    def needs(self, args: dict[str, Any]) -> Needs:
        return Needs(
            {"files", "units"}, files={PYZ, UNIT}, contents={UNIT}, units={"drfleet-agent.service"}
        )

    def change(self, args: dict[str, Any], facts: Facts, ctx: HostContext) -> Change | None:
        major_minor = tuple(int(x) for x in facts.python.split(".")[:2])
        if major_minor < (3, 10):
            raise ModuleFailure(
                f"the agent needs python3 3.10 or later; the host has {facts.python}"
            )
        steps: list[Step] = []
        what: list[str] = []
        data = bundle()
        if facts.file(PYZ).sha256 != hashlib.sha256(data).hexdigest():
            steps.append(atomic_write(PYZ, "0755", "root", "root", data))
            what.append("install agent bundle")
        unit = agent_bundle.unit_text(
            args["python"], args["state_dir"], args["ec2_notices"]
        ).encode()
        if facts.file(UNIT).sha256 != hashlib.sha256(unit).hexdigest():
            steps.append(atomic_write(UNIT, "0644", "root", "root", unit))
            what.append("install unit")
        state = facts.unit("drfleet-agent.service")
        if steps:
            steps.append(Step(cmd("systemctl", "daemon-reload")))
        if state.enabled != "enabled":
            steps.append(Step(cmd("systemctl", "enable", "drfleet-agent.service")))
            what.append("enable")
        if what and (what[0].startswith("install") and state.active == "active"):
            steps.append(Step(cmd("systemctl", "restart", "drfleet-agent.service")))
            what.append("restart (its files changed)")
        elif state.active != "active":
            steps.append(Step(cmd("systemctl", "start", "drfleet-agent.service")))
            what.append("start")
        return Change(steps, "agent: " + ", ".join(what)) if what else None

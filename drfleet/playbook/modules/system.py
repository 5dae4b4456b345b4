"""service, group_member, command, assert."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drfleet.playbook import shellvalues
from drfleet.playbook.model import Change, ModuleFailure, Needs, Step
from drfleet.playbook.modules.base import Arg, Module
from drfleet.shell import Command, Raw, cmd

if TYPE_CHECKING:
    from drfleet.hosts.hostfacts import Facts
    from drfleet.playbook.context import HostContext


class Service(Module):
    """A systemd unit: enabled or not; started, stopped or restarted; daemon-reload first
    whenever systemd says a unit file changed."""

    name = "service"
    spec = {
        "name": Arg(required=True),
        "state": Arg(choices=("started", "stopped", "restarted", "reloaded")),
        "enabled": Arg((bool,)),
    }
    touches = frozenset({"units", "docker"})

    def needs(self, args: dict[str, Any]) -> Needs:
        return Needs({"units"}, units={args["name"]})

    def change(self, args: dict[str, Any], facts: Facts, ctx: HostContext) -> Change | None:
        name = args["name"]
        unit = facts.unit(name)
        steps: list[Step] = []
        what: list[str] = []
        if unit.need_reload == "yes":
            steps.append(Step(cmd("systemctl", "daemon-reload")))
            what.append("daemon-reload")
        if unit.load == "not-found" and not ctx.check and not steps:
            # maybe installed by this very run: reload so systemd sees it
            steps.append(Step(cmd("systemctl", "daemon-reload")))
        enabled = unit.enabled in ("enabled", "static", "enabled-runtime", "alias")
        if args["enabled"] is True and not enabled:
            steps.append(Step(cmd("systemctl", "enable", name)))
            what.append("enable")
        elif args["enabled"] is False and unit.enabled == "enabled":
            steps.append(Step(cmd("systemctl", "disable", name)))
            what.append("disable")
        active = unit.active == "active"
        state = args["state"]
        if state == "started" and not active:
            steps.append(Step(cmd("systemctl", "start", name)))
            what.append("start")
        elif state == "stopped" and active:
            steps.append(Step(cmd("systemctl", "stop", name)))
            what.append("stop")
        elif state in ("restarted", "reloaded"):
            verb = "restart" if state == "restarted" else "reload-or-restart"
            steps.append(Step(cmd("systemctl", verb, name)))
            what.append(verb)
        if not what:
            return None
        return Change(steps, f"{name}: {', '.join(what)}")


class GroupMember(Module):
    name = "group_member"
    spec = {"user": Arg(required=True), "group": Arg(required=True)}
    touches = frozenset({"users"})

    def needs(self, args: dict[str, Any]) -> Needs:
        return Needs({"users"}, users={args["user"]})

    def change(self, args: dict[str, Any], facts: Facts, ctx: HostContext) -> Change | None:
        user = facts.account(args["user"])
        if not user.exists:
            raise ModuleFailure(f"user {args['user']!r} does not exist on the host")
        if args["group"] in user.groups:
            return None
        return Change(
            [Step(cmd("usermod", "-aG", args["group"], args["user"]))],
            f"add {args['user']} to group {args['group']}",
        )


def shell_line(line: str) -> Command:
    """A playbook's shell line. With values (templating.ShellText), it runs under `sh -c`
    with each value in its environment, every part of that quoted: the line holds only
    references to them."""
    values: tuple[str, ...] = getattr(line, "values", ())
    if not values:
        return Command((Raw(line),))
    names = [f"{shellvalues.VAR}{i}={v}" for i, v in enumerate(values, 1)]
    return cmd("env", *names, "sh", "-c", str(line))


class CommandModule(Module):
    """A command, for what no module covers. `argv` quotes every item; a `shell` line's
    values reach it as its environment, never as its text (shell_line). Guards make it
    idempotent: `creates` (a path that exists once it ran) and `unless` (a shell test that
    succeeds when nothing is to do). Without a guard it runs every time and counts as
    changed."""

    name = "command"
    spec = {"argv": Arg((list,)), "shell": Arg(), "creates": Arg(), "unless": Arg(), "chdir": Arg()}
    touches = frozenset({"files", "packages", "units", "images", "networks"})

    def needs(self, args: dict[str, Any]) -> Needs:
        return Needs({"files"}, files={args["creates"]}) if args.get("creates") else Needs()

    def change(self, args: dict[str, Any], facts: Facts, ctx: HostContext) -> Change | None:
        if (args["argv"] is None) == (args["shell"] is None):
            raise ModuleFailure("command needs exactly one of argv and shell")
        if args["creates"] and facts.file(args["creates"]).exists:
            return None
        command = (
            cmd(*[str(a) for a in args["argv"]])
            if args["argv"] is not None
            else shell_line(args["shell"])
        )
        if args["chdir"]:
            command = cmd("cd", args["chdir"]).then(command)
        unless = shell_line(args["unless"]) if args["unless"] else None
        return Change([Step(command, unless=unless)], f"run {command.display()}")


class Assert(Module):
    """Refuses the host, with `msg`, unless every expression in `that` holds."""

    name = "assert"
    spec = {"that": Arg((list, str), required=True), "msg": Arg(required=True)}

    def change(self, args: dict[str, Any], facts: Facts, ctx: HostContext) -> Change | None:
        exprs = [args["that"]] if isinstance(args["that"], str) else args["that"]
        for expr in exprs:
            if not ctx.evaluate(str(expr)):
                raise ModuleFailure(ctx.render(args["msg"]))
        return None

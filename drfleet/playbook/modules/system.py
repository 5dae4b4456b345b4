"""service, group_member, command, assert, first_boot."""

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


# Waits, as apt's DPkg::Lock::Timeout would, for dpkg's and apt's locks to be free (taken and
# given back at once, as apt takes them), polling every 2 s up to the limit.
_LOCKS_FREE = """import fcntl, os, sys, time
deadline = time.monotonic() + int(sys.argv[1])
for path in sys.argv[2:]:
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
        except OSError:
            break
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit("%s is still locked after %s s" % (path, sys.argv[1]))
            time.sleep(2)
        finally:
            os.close(fd)
"""


class FirstBoot(Module):
    """Waits for what holds a freshly booted cloud host's apt, its reason on the host's
    progress line: cloud-init's first boot (`cloud-init status --wait`; its own errors are
    cloud-init's to report and do not fail the task) and the process holding dpkg's lock
    (unattended-upgrades, apt-daily). Nothing to wait for: no change."""

    name = "first_boot"
    spec = {"timeout": Arg((int,), default=900)}
    touches = frozenset({"boot"})

    def needs(self, args: dict[str, Any]) -> Needs:
        return Needs({"boot"})

    def change(self, args: dict[str, Any], facts: Facts, ctx: HostContext) -> Change | None:
        from drfleet.hosts.probe import APT_LOCKS

        boot = facts.boot
        reasons = []
        if boot.cloud_init == "running":
            reasons.append("cloud-init's first boot")
        if boot.apt_lock:
            reasons.append(f"apt's lock, held by {boot.apt_lock}")
        if not reasons:
            return None
        limit = args["timeout"]
        settle = Command(
            (
                Raw("{ ! command -v cloud-init >/dev/null || timeout"),
                str(limit),
                Raw("cloud-init status --wait >/dev/null 2>&1 || true; } &&"),
                *cmd("python3", "-c", _LOCKS_FREE, str(limit), *APT_LOCKS).parts,
            )
        )
        return Change([Step(settle, timeout=2 * limit + 60)], "wait for " + " and ".join(reasons))

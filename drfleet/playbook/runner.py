"""Runs a playbook on hosts.

Per host: ONE connection and ONE fact probe up front (asking for what every task will look
at), then the tasks in order. A task that changes something marks the facts it touched as
stale; they are probed again only if a later task needs them. So a run with nothing to do
costs one connection and one command per host.

Hosts run in parallel and independently, except at fleet-scoped tasks (swarm, images from a
peer), which wait for every host of the play and then run once. A failed task stops that
host only. Handlers notified by a change are recorded on the host in the same command as the
change, so a failure (or a killed controller) cannot lose them: the next run performs them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drfleet.errors import DrfleetError, host_fields
from drfleet.hosts import facts as facts_mod
from drfleet.hosts.inventory import Host, Inventory
from drfleet.hosts.remote import Unreachable, fan_out, session
from drfleet.names import LIB_DIR, PENDING_HANDLERS, STATE_DIR, TASKSET_SHIM, XAUTHORITY
from drfleet.playbook.context import HostContext
from drfleet.playbook.hoststate import HostState, RunOptions
from drfleet.playbook.model import (
    Change,
    ModuleFailure,
    Needs,
    Play,
    Playbook,
    PlayReport,
    Step,
    Task,
    TaskResult,
)
from drfleet.playbook.modules import FLEET_SPECS, MODULES
from drfleet.playbook.modules.base import validate
from drfleet.shell import Command, Raw, cmd, join
from drfleet.ui import Board

# the names drfleet gives paths on a host, as playbooks see them ({{ drfleet.state_dir }})
PATHS = {
    "state_dir": STATE_DIR,
    "lib_dir": LIB_DIR,
    "taskset": TASKSET_SHIM,
    "xauthority": XAUTHORITY,
}
PENDING = PENDING_HANDLERS


class Runner:
    def __init__(
        self,
        playbook: Playbook,
        inventory: Inventory,
        hosts: list[Host],
        options: RunOptions,
        board: Board | None = None,
    ) -> None:
        self.playbook = playbook
        self.inventory = inventory
        self.hosts = hosts
        if board is not None:  # each connect retry said on the host's line
            options = dataclasses.replace(
                options, remote=dataclasses.replace(options.remote, notice=board.update)
            )
        self.options = options
        self.board = board
        self.base_dir = Path(playbook.path).parent
        self.states = {h.name: HostState(h, PlayReport(h.name)) for h in hosts}
        self.started = time.monotonic()
        self.trainer_name: str | None = inventory.trainer.name if inventory.trainer else None
        self.fleet = {
            "hosts": list(inventory.hosts),
            "selected": [h.name for h in hosts],
            "trainer": inventory.trainer.name if inventory.trainer else None,
            "multi_host": len(inventory.hosts) > 1,
        }

    # -- the whole run -----------------------------------------------------------------
    def run(self) -> dict[str, PlayReport]:
        try:
            fan_out(self.hosts, self._connect, limit=self.options.remote.limit)
            for play in self.playbook.plays:
                self._play(play)
        finally:
            for st in self.states.values():
                if st.session is not None:
                    st.session.close()
                st.report.elapsed = time.monotonic() - self.started
                if self.board:
                    self._final(st)
        return {name: st.report for name, st in self.states.items()}

    def simulate(self, facts: dict[str, dict[str, Any]]) -> dict[str, PlayReport]:
        """Check mode without any host: plans every task from the facts given (the pure
        planning of the GPU, OpenGL and OS branches, tested without hosts)."""
        assert self.options.check, "simulate() only plans"
        for name, f in facts.items():
            st = self.states[name]
            st.facts = {
                "files": {},
                "units": {},
                "users": {},
                "packages": {},
                "images": {},
                "networks": {},
                **f,
            }
            st.pending = list(st.facts.get("pending") or [])
        for play in self.playbook.plays:
            self._play(play)
        return {name: st.report for name, st in self.states.items()}

    def _final(self, st: HostState) -> None:
        r = st.report
        if r.unreachable:
            self.board.done(st.host.name, "unreachable", ok=False)  # type: ignore[union-attr]
            return
        text = (
            f"ok={r.count('ok')} changed={r.count('changed')} failed={r.count('failed')} "
            f"skipped={r.count('skipped')}"
        )
        self.board.done(st.host.name, text, ok=not r.failed)  # type: ignore[union-attr]

    def meter(self, st: HostState, text: str) -> None:
        """Progress of a long copy on the host: bytes, rate, time left."""
        if self.board:
            self.board.progress(st.host.name, text)

    def progress(self, st: HostState, text: str) -> None:
        """A line of live progress for the host (the board), with its task counts."""
        if self.board:
            r = st.report
            counts = f"ok={r.count('ok')} changed={r.count('changed')}" if r.tasks else ""
            self.board.update(st.host.name, f"{text}  {counts}".rstrip())

    def _members(self, play: Play) -> list[HostState]:
        names = self.inventory.groups.get(play.hosts)
        if names is None:
            raise DrfleetError(
                f"play {play.name!r}: no group {play.hosts!r} in the inventory", where=play.source
            )
        return [self.states[n] for n in names if n in self.states]

    def _play(self, play: Play) -> None:
        members = self._members(play)
        segment: list[Task] = []

        def flush() -> None:
            if segment:
                tasks = list(segment)
                segment.clear()
                fan_out(
                    [s.host for s in members if not s.stopped],
                    lambda h: self._tasks(self.states[h.name], play, tasks),
                    limit=self.options.remote.limit,
                )

        for task in play.tasks:
            if task.module in FLEET_SPECS:
                flush()
                self._fleet_task(play, task, [s for s in members if not s.stopped])
            else:
                segment.append(task)
        flush()
        # a failed host runs no handlers now (its state is unknown); they stay recorded on it
        # and the next run performs them
        fan_out(
            [s.host for s in members if not s.stopped],
            lambda h: self._handlers(self.states[h.name], play),
            limit=self.options.remote.limit,
        )

    # -- connecting and facts ---------------------------------------------------------------
    def _connect(self, host: Host) -> None:
        st = self.states[host.name]
        st.become = True if any(p.become for p in self.playbook.plays) else None
        self.progress(st, "connecting")
        st.session = session(host, self.options.remote)
        needs = Needs({"pending", "users"})  # cheap, and often asked for through templates
        for play in self.playbook.plays:
            for task in (*play.tasks, *play.handlers):
                needs = needs | self._static_needs(st, play, task)
        try:
            self.progress(st, "gathering facts")
            st.facts = facts_mod.gather(st.session, needs.params(), become=st.become)
            st.asked = needs | Needs({"docker"})  # the base probe always reports docker
            st.pending = list(st.facts.get("pending") or [])
        except DrfleetError as exc:
            said = host_fields(False, exc)
            st.report.error, st.report.fix = str(said["error"]), str(said["fix"] or "")
            st.stopped = True
            if isinstance(exc, Unreachable):
                st.report.unreachable = True
            else:
                st.report.tasks.append(TaskResult("gather facts", "failed", exc.message))

    def _static_needs(self, st: HostState, play: Play, task: Task) -> Needs:
        """What a task will look at, when its arguments can be known before any fact."""
        if task.module in FLEET_SPECS:
            wanted = {"images", "networks", "net", "nodes"}
            return Needs(wanted | {"ipsec"} if task.module == "swarm" else wanted)
        try:
            ctx = self._ctx(st, play, task, facts=None)
            args = validate(
                task.module, MODULES[task.module].spec, self._render_args(ctx, task), rendered=True
            )
            return MODULES[task.module].needs(args)
        except (DrfleetError, ValueError, KeyError, TypeError):
            return Needs()  # depends on facts: asked for lazily, when the task runs

    def ensure_facts(self, st: HostState, needs: Needs) -> None:
        """Probes again only for what this task needs and is stale or was never asked."""
        if st.session is None:  # simulate(): the facts given are all there is
            return
        stale = needs.sections & st.dirty
        have = st.facts
        missing = Needs(
            needs.sections - st.asked.sections,
            {f for f in needs.files if f not in have.get("files", {})},
            {f for f in needs.contents if f not in st.asked.contents},
            {u for u in needs.units if u not in have.get("units", {})},
            {u for u in needs.users if u not in have.get("users", {})},
        )
        ask = missing | Needs(
            stale,
            needs.files if stale & {"files"} else set(),
            needs.contents if stale & {"files"} else set(),
            needs.units if stale & {"units"} else set(),
            needs.users if stale & {"users"} else set(),
        )
        sections = ask.sections | {
            s
            for s, items in (("files", ask.files), ("units", ask.units), ("users", ask.users))
            if items
        }
        if not sections:
            return
        params = {**ask.params(), "only": sorted(sections | ({"docker"} & stale))}
        assert st.session is not None
        fresh = facts_mod.gather(st.session, params, become=st.become)
        for key in ("files", "units", "users"):
            if key in fresh:
                st.facts.setdefault(key, {}).update(fresh.pop(key))
        st.facts.update(fresh)
        st.asked = st.asked | needs
        st.dirty -= sections

    # -- tasks --------------------------------------------------------------------------------
    def _ctx(
        self, st: HostState, play: Play, task: Task, facts: dict[str, Any] | None
    ) -> HostContext:
        # Ansible's order: play defaults < inventory (group, then host) < play vars < extra vars
        vars_ = {**play.defaults, **st.host.vars, **play.vars, **self.options.extra_vars}
        return HostContext(
            st.host,
            vars_,
            facts if facts is not None else st.facts,
            self.base_dir,
            self.options.check,
            task.source,
            {"fleet": self.fleet, "drfleet": PATHS},
        )

    def _render_args(self, ctx: HostContext, task: Task) -> dict[str, Any]:
        args: dict[str, Any] = {}
        for key, value in task.args.items():
            shell = task.module == "command" and key in ("shell", "unless")
            args[key] = ctx.render(value, shell=shell)
        return args

    def _tasks(self, st: HostState, play: Play, tasks: list[Task]) -> None:
        for i, task in enumerate(tasks, 1):
            if st.stopped:
                return
            self.progress(st, f"[{i}/{len(tasks)}] {task.name}")
            result = self._task(st, play, task)
            st.report.tasks.append(result)
            if result.status == "failed" and not task.ignore_errors:
                st.stopped = True

    def _task(self, st: HostState, play: Play, task: Task, handler: bool = False) -> TaskResult:
        started = time.monotonic()
        ctx = self._ctx(st, play, task, None)
        try:
            if task.when and not handler and not ctx.evaluate(task.when):
                return TaskResult(task.name, "skipped", f"when: {task.when}")
            module = MODULES[task.module]
            args = validate(task.module, module.spec, self._render_args(ctx, task), rendered=True)
            self.ensure_facts(st, module.needs(args))
            ctx.facts = st.facts
            change = module.change(args, st.typed, ctx)
        except (ModuleFailure, ValueError) as exc:
            return TaskResult(
                task.name,
                "failed",
                f"{st.host.name}: task {task.name!r}: {exc}",
                elapsed=time.monotonic() - started,
            )
        except DrfleetError as exc:
            return self._failed(st, task, exc, started)
        if change is None:
            return TaskResult(task.name, "ok", elapsed=time.monotonic() - started)
        commands = [s.command.display() for s in change.steps]
        if self.options.check:
            st.pending += [n for n in task.notify if n not in st.pending]
            return TaskResult(
                task.name,
                "changed",
                f"would {change.msg}",
                change.diff,
                commands,
                time.monotonic() - started,
            )
        try:
            ran = self._execute(st, task, change, play)
        except DrfleetError as exc:
            return self._failed(st, task, exc, started)
        if not ran:
            return TaskResult(task.name, "ok", "guard holds", elapsed=time.monotonic() - started)
        st.dirty |= set(module.touches)
        return TaskResult(
            task.name, "changed", change.msg, change.diff, commands, time.monotonic() - started
        )

    def _failed(self, st: HostState, task: Task, exc: DrfleetError, started: float) -> TaskResult:
        if isinstance(exc, Unreachable):
            st.report.unreachable = True
        msg = exc.message
        if not msg.startswith(st.host.name):
            msg = f"{st.host.name}: task {task.name!r}: {msg}"
        return TaskResult(task.name, "failed", msg, elapsed=time.monotonic() - started)

    def _execute(self, st: HostState, task: Task, change: Change, play: Play) -> bool:
        become = task.become if task.become is not None else st.become
        ran = False
        notify = [n for n in task.notify if n not in st.pending]
        for i, step in enumerate(change.steps):
            if step.unless is not None:
                guard = st.run(step.unless, become=become, check=False, task=task.name)
                if guard.ok:
                    continue
            command = step.command
            if notify and i == len(change.steps) - 1:
                # recorded with the change itself: a later failure cannot lose the handler
                command = join([command, self._pending_cmd([*st.pending, *notify])])
            stdin = step.stdin() if callable(step.stdin) else step.stdin
            st.run(
                command,
                stdin=stdin,
                timeout=step.timeout,
                become=step.become if step.become is not None else become,
                task=task.name,
            )
            ran = True
        if ran:
            for n in notify:
                st.pending.append(n)
        return ran

    @staticmethod
    def _pending_cmd(names: list[str]) -> Command:
        if not names:
            return cmd("rm", "-f", PENDING)
        body = "".join(f"{n}\n" for n in names)
        return join(
            [
                cmd("mkdir", "-p", "-m", "0700", STATE_DIR),
                Command((Raw("printf '%s'"), body, Raw(">"), PENDING)),
            ]
        )

    def _handlers(self, st: HostState, play: Play) -> None:
        if st.report.unreachable:
            return
        mine = [h for h in play.handlers if h.name in st.pending]
        for handler in mine:
            self.progress(st, f"handler: {handler.name}")
            result = self._task(st, play, handler, handler=True)
            result.name = f"handler: {handler.name}"
            st.report.tasks.append(result)
            if result.status == "failed":
                st.stopped = True
                return
            if not self.options.check:
                st.pending.remove(handler.name)
                try:
                    st.run(self._pending_cmd(st.pending), become=st.become)
                except DrfleetError as exc:
                    st.report.tasks.append(TaskResult("record handlers", "failed", exc.message))
                    return

    # -- fleet-scoped tasks ----------------------------------------------------------------
    def _fleet_task(self, play: Play, task: Task, members: list[HostState]) -> None:
        from drfleet.playbook import fleet

        chosen: list[tuple[HostState, dict[str, Any]]] = []
        for st in members:
            self.progress(st, f"waiting for the fleet: {task.name}")
            ctx = self._ctx(st, play, task, None)
            try:
                if task.when and not ctx.evaluate(task.when):
                    st.report.tasks.append(TaskResult(task.name, "skipped", f"when: {task.when}"))
                    continue
                args = validate(
                    task.module,
                    FLEET_SPECS[task.module],
                    self._render_args(ctx, task),
                    rendered=True,
                )
            except (ValueError, DrfleetError) as exc:
                st.report.tasks.append(TaskResult(task.name, "failed", str(exc)))
                st.stopped = True
                continue
            chosen.append((st, args))
        if not chosen:
            return
        runner: Callable[..., dict[str, TaskResult]] = getattr(fleet, task.module)
        results = runner(self, task, chosen)
        for st, _args in chosen:
            result = results.get(st.host.name, TaskResult(task.name, "ok"))
            st.report.tasks.append(result)
            if result.status == "failed":
                st.stopped = True

    def peer_state(self, name: str) -> HostState:
        """A host outside the selection that a fleet task needs (the swarm's manager)."""
        if name not in self.states:
            host = self.inventory.hosts[name]
            self.states[name] = HostState(host, PlayReport(name))
            self._connect(host)
        return self.states[name]


def report_json(reports: dict[str, PlayReport], check: bool, diff: bool = False) -> dict[str, Any]:
    return {"check": check, "hosts": {n: r.as_json(check, diff) for n, r in reports.items()}}


__all__ = ["RunOptions", "Runner", "Step", "report_json"]

"""The daemon: reconcile on every docker event, desired-state change, due restart, and at
least every `periodic` seconds. It survives dockerd going away, and its own restarts (what it
must remember lives in the state dir and on the containers' labels)."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

from drfleet_agent import __version__
from drfleet_agent.contract import AgentInfo, ContainerStatus, HostStatus, Reason, State
from drfleet_agent.ec2notices import Metadata, Watcher
from drfleet_agent.engine import ActionFailed, DockerDown, Engine
from drfleet_agent.reconcile import (
    DEFAULT_BACKOFF,
    L_ROLE,
    Backoff,
    Conflict,
    Create,
    Decision,
    Observed,
    Record,
    Remove,
    Start,
    decide,
)
from drfleet_agent.spec import Fleetwide, merge
from drfleet_agent.store import StateDir

log = logging.getLogger("drfleet-agent")


def _read(state: StateDir, previous: Fleetwide) -> Fleetwide:
    try:
        return state.read_desired()
    except ValueError as exc:  # only `apply` writes stacks, after validating; be safe anyway
        log.error("the desired state is invalid, keeping the previous one: %s", exc)
        return previous


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


class Agent:
    def __init__(
        self,
        state: StateDir,
        engine_factory: Callable[[], Engine],
        *,
        backoff: Backoff = DEFAULT_BACKOFF,
        periodic: float = 10.0,
        poll: float = 1.0,
        clock: Callable[[], float] = time.time,
        ec2_notices: Metadata | None = None,
    ) -> None:
        self.state = state
        self.engine_factory = engine_factory
        self.engine: Engine | None = None
        self.backoff = backoff
        self.periodic = periodic
        self.poll = poll
        self.clock = clock
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.desired: Fleetwide = _read(state, merge({}))
        self.desired_seen = state.desired_signature()
        self.records: dict[str, Record] = state.read_records()
        self.errors: dict[str, tuple[Reason, str]] = {}  # name -> why it is not as wanted
        self.docker_error = ""
        self.swarm_active = False
        self.last_ok: float | None = None
        self.down_since: float | None = None
        self.outage: tuple[float, float] | None = None
        self.last_reconcile: float | None = None
        # an EC2 instance: its interruption notices, reported in the status as they come
        self.notices = Watcher(ec2_notices, self.wake.set) if ec2_notices else None

    # -- the loop --------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGHUP, lambda *_: self.wake.set())
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        signal.signal(signal.SIGINT, lambda *_: self.stop())

    def reload(self) -> None:
        self.desired = _read(self.state, self.desired)
        self.desired_seen = self.state.desired_signature()
        self.records = self.state.read_records()

    def run(self) -> None:
        self.install_signal_handlers()
        threading.Thread(target=self._watch_events, name="events", daemon=True).start()
        if self.notices:
            self.notices.start()
        next_periodic = 0.0
        due: float | None = None
        while not self.stopping.is_set():
            now = self.clock()
            changed = self._reload_desired()
            woken = self.wake.is_set()
            self.wake.clear()
            if changed or woken or now >= next_periodic or (due is not None and now >= due):
                due = self.reconcile()
                next_periodic = self.clock() + self.periodic
            timeout = self.poll
            if due is not None:
                timeout = min(timeout, max(0.05, due - self.clock()))
            self.wake.wait(timeout)
        log.info("stopping; containers keep running")

    def stop(self) -> None:
        if self.notices:
            self.notices.stop()
        self.stopping.set()
        self.wake.set()

    def _reload_desired(self) -> bool:
        seen = self.state.desired_signature()
        if seen == self.desired_seen:
            return False
        self.desired_seen = seen
        self.desired = _read(self.state, self.desired)
        log.info(
            "desired state: %s",
            ", ".join(
                f"{k} generation {d.generation} ({len(d.containers)} containers)"
                for k, d in sorted(self.desired.stacks.items())
            )
            or "nothing",
        )
        return True

    def _watch_events(self) -> None:
        while not self.stopping.is_set():
            try:
                engine = self.engine or self.engine_factory()
                stream = engine.events()
                for _event in stream:
                    self.wake.set()
                    if self.stopping.is_set():
                        stream.close()
                        return
            except Exception as exc:  # dockerd gone: the main loop notices and reconnects
                log.debug("event stream ended: %s", exc)
            self.stopping.wait(1.0)

    # -- one pass ----------------------------------------------------------------------------
    def reconcile(self) -> float | None:
        """Observes, decides, acts, writes status. Returns when it next needs to run.

        It re-plans after acting (a container may die at once), at most a few passes, so the
        status it writes and the wake-up it returns describe what is true afterwards."""
        now = self.clock()
        try:
            engine = self._engine()
            self._mark_ok(now)  # before deciding: exits during an outage are judged by it
            names = {s.name for s in self.desired.containers}
            for _ in range(3):
                observed = engine.observe(names)
                plan = decide(
                    self.desired, observed, self.records, self.clock(), self.backoff, self.outage
                )
                if not self._act(engine, plan):
                    break
            self.last_reconcile = now
            self._forgive(plan)
            self._write_status(observed, plan)
            if self.outage and now - self.outage[1] > 60:
                self.outage = None
            actionable = any(not isinstance(a, Conflict) for a in plan.actions)
            return self.clock() if actionable else plan.next_due
        except DockerDown as exc:
            self._mark_down(now, str(exc))
            self._write_status([], Decision())
            return now + 2.0

    def _engine(self) -> Engine:
        if self.engine is None:
            self.engine = self.engine_factory()
        info = self.engine.ping()
        self.swarm_active = (info.get("Swarm") or {}).get("LocalNodeState") == "active"
        return self.engine

    def _mark_ok(self, now: float) -> None:
        if self.down_since is not None:
            start = self.last_ok if self.last_ok is not None else self.down_since
            self.outage = (start, now)
            log.info("dockerd is back")
        self.down_since = None
        self.last_ok = now
        self.docker_error = ""

    def _mark_down(self, now: float, error: str) -> None:
        if self.down_since is None:
            log.warning("%s; waiting for it", error)
            self.down_since = now
        self.docker_error = error

    def _act(self, engine: Engine, plan: Decision) -> bool:
        fleet = self.desired.fleet
        acted = False
        for action in plan.actions:
            name = action.name if isinstance(action, Remove) else action.spec.name
            rec = (
                self.records.setdefault(name, Record()) if not isinstance(action, Remove) else None
            )
            try:
                if isinstance(action, Remove):
                    log.info("removing %s (%s): %s", name, action.id[:12], action.reason)
                    engine.remove(action.id, name)
                elif isinstance(action, Create):
                    assert rec is not None
                    if action.replaces:
                        log.info("replacing %s: spec changed", name)
                        engine.remove(action.replaces, name)
                        rec.restarts = rec.crashes = 0
                    for net in action.spec.networks:
                        engine.ensure_network(net, fleet, self.swarm_active)
                    pinned = self.state.read_images().get(action.spec.image)
                    cid = engine.create(action.spec, fleet, self.desired.run_of(name), pinned)
                    engine.start(cid, name)
                    rec.container_id = cid
                    log.info("started %s (%s)", name, cid[:12])
                elif isinstance(action, Start):
                    assert rec is not None
                    if action.restart:
                        rec.restarts += 1
                        rec.crashes = action.crashes
                        rec.last_exit_code = action.exit_code
                        log.info(
                            "restarting %s (exit %s, restart %d)",
                            name,
                            action.exit_code,
                            rec.restarts,
                        )
                    engine.start(action.id, name)
                    rec.container_id = action.id
                elif isinstance(action, Conflict):
                    self.errors[name] = (Reason.NAME_TAKEN, action.message)
                    continue
                self.errors.pop(name, None)
                acted = True
            except ActionFailed as exc:
                log.error("%s", exc)
                self.errors[name] = (Reason.ACTION_FAILED, str(exc))
        wanted = {s.name for s in self.desired.containers}
        for gone in set(self.records) - wanted:
            del self.records[gone]
        for gone in set(self.errors) - wanted:
            del self.errors[gone]
        self.state.write_records(self.records)
        return acted

    def _forgive(self, plan: Decision) -> None:
        if plan.forgive:
            for name in plan.forgive:
                self.records[name].crashes = 0
            self.state.write_records(self.records)

    def _write_status(self, observed: list[Observed], plan: Decision) -> None:
        by_name = {o.labels.get("drfleet.name"): o for o in observed if o.ours}
        rows = []
        for s in self.desired.containers:
            o = by_name.get(s.name)
            rec = self.records.get(s.name, Record())
            reason, error = self.errors.get(s.name, (Reason.NONE, ""))
            row = ContainerStatus(
                name=s.name,
                role=s.role,
                image=s.image,
                state=State.MISSING,
                reason=reason,
                restarts=rec.restarts,
                last_exit_code=rec.last_exit_code,
                last_error=error,
                labels=s.labels,
                stack=self.desired.stack_of(s.name),
            )
            if o is None:
                if reason is Reason.NAME_TAKEN:
                    row.state = State.CONFLICT
                elif reason is not Reason.NONE:
                    row.state = State.ERROR
            else:
                row.container_id = o.id[:12]
                row.started_at = iso(o.started_at)
                row.role = o.labels.get(L_ROLE, s.role)
                if o.status == "running":
                    row.ports = o.ports
                    row.addresses = o.addresses
                if o.status != "running" and o.exit_code is not None:
                    row.last_exit_code = o.exit_code
                if o.error:
                    row.last_error = row.last_error or o.error
                if s.name in plan.waiting:
                    row.state = State.WAITING
                    row.next_restart_at = iso(plan.waiting[s.name])
                elif s.name in plan.done:
                    row.state = State.COMPLETED if o.exit_code == 0 else State.EXITED
                else:
                    row.state = State.of(o.status)
            rows.append(row)
        status = HostStatus(
            AgentInfo(
                version=__version__,
                pid=os.getpid(),
                state_dir=str(self.state.path),
                fleet=self.desired.fleet,
                generation=self.desired.generation,
                stacks={
                    k: {"run_id": d.run_id, "generation": d.generation}
                    for k, d in self.desired.stacks.items()
                },
                docker_reachable=not self.docker_error,
                docker_error=self.docker_error,
                last_reconcile=iso(self.last_reconcile),
                updated_at=iso(self.clock()),
                ec2=self.notices.latest.to_json() if self.notices else None,
            ),
            rows,
        )
        self.state.write_status(status)

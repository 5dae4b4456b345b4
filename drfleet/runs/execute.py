"""The one way the controller changes what hosts run. A command computes, purely, an
`Intent`: each host's stacks as they are to be held, the local effects (minio's keys adopted
into the env dir, the run's files put in S3, the sagemaker container ended) and what becomes
of the run record. `execute` carries it out, always in this order:

    lock -> generation -> preflight (shims, conflicts) -> keys adopted -> early stacks
    (the fleet's minio) -> S3 objects -> record saved -> unlock -> reach check ->
    stage + apply per host (with its after-steps) -> record completed (fence)

A refused preflight, adoption, early stack or upload leaves the record as it was; once the
record is saved the hosts are told, and a host that could not be told is what the record's
fence remembers. No other module calls the agent's apply or hands out a generation
(tests/unit/test_architecture.py holds every module to that)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drfleet_agent.spec import ContainerSpec, DesiredState, SpecError, container

from drfleet.errors import DrfleetError
from drfleet.hosts import agent_client
from drfleet.hosts.agent_client import HostStatus, reach
from drfleet.hosts.inventory import Host
from drfleet.hosts.remote import Options, Outcome, Session, fan_out, session
from drfleet.hosts.tunnel import forward
from drfleet.names import FLEET, METRICS_STACK
from drfleet.runs import converge, runstate, sharing, storage, training
from drfleet.runs.placement import Plan
from drfleet.runs.sagemaker import remove_sagemaker
from drfleet.ui import Board

# stacks a host may hold beside the fleet's minio when it is "alone" there: not runs
ALONGSIDE = frozenset({METRICS_STACK})


@dataclass(frozen=True)
class Stack:
    """One stack as one host is to hold it; no containers: the host drops it (the others
    stay). generation None: the one this execution hands out; a number: one handed out
    before (a fence). force: obeyed whatever generation the host holds (stop, the fleet's
    minio); clear: every other stack goes too. owned: its containers are labelled with
    whose they are (specs.owned). early: applied before the S3 objects and the record (the
    fleet's minio, which the upload needs). when_alone: applied only when, after the stacks
    before it, the host holds this stack alone (the last run on the fleet's minio ended)."""

    host: str
    name: str
    run_id: str
    containers: tuple[ContainerSpec, ...] = ()
    wait: float = 180
    force: bool = False
    clear: bool = False
    owned: bool = False
    generation: int | None = None
    early: bool = False
    when_alone: bool = False


@dataclass(frozen=True)
class Preflight:
    """What must hold on every host before any is told anything (converge.shims,
    sharing.conflicts). replace: another env dir's run of the same DR_RUN_ID may be taken
    over. held: the hosts' statuses as the command read them (None: read them now)."""

    replace: bool = False
    held: Mapping[str, HostStatus] | None = None


@dataclass(frozen=True)
class Upload:
    """The run's files to its S3 (training.objects, storage.upload): through the trainer's
    minio with DR_CLOUD=local, else where this machine reaches it (storage.direct)."""

    prepared: training.Prepared
    creds: Mapping[str, str]
    trainer: str
    wipe: bool
    live: bool


@dataclass(frozen=True)
class Reach:
    """Every host about to run containers reaches the run's S3 (converge.reach_check)."""

    prepared: training.Prepared
    trainer: str
    keys: bool


@dataclass(frozen=True)
class SaveRun:
    """The record becomes this run with this plan, saved before any host is told. down:
    hosts that cannot be told now; they are fenced with this generation. based_on: the
    record's generation the intent was computed from; another command's record saved
    meanwhile refuses it (None: not checked)."""

    run_id: str
    bucket: str
    prefix: str
    plan: Plan
    down: frozenset[str] = frozenset()
    based_on: int | None = None


@dataclass(frozen=True)
class EndRun:
    """The record goes once the hosts are told; the hosts that could not be are kept in its
    fence with this generation, to be told when next seen."""


@dataclass(frozen=True)
class Fenced:
    """The hosts told (at their fence's generation) leave the record's fence."""


Record = SaveRun | EndRun | Fenced


@dataclass(frozen=True)
class Sagemaker:
    """After its stacks: the sagemaker container rl_coach started on host for run_id (None:
    for any run), which no agent owns, removed with its job folder."""

    host: str
    run_id: str | None


@dataclass(frozen=True)
class Intent:
    what: str
    stacks: tuple[Stack, ...] = ()
    preflight: Preflight | None = None
    record: Record | None = None
    adopt: Mapping[str, str] | None = None
    upload: Upload | None = None
    reach: Reach | None = None
    staged: Mapping[str, training.Staged] = field(default_factory=dict)
    owner: Any = None  # the TrainingConfig whose labels owned stacks get
    after: tuple[Sagemaker, ...] = ()

    @property
    def hosts(self) -> list[str]:
        """The hosts told, in the order their stacks are listed."""
        return list(dict.fromkeys([s.host for s in self.stacks] + [a.host for a in self.after]))


@dataclass
class Executed:
    generation: int | None
    outcomes: dict[str, Outcome[HostStatus]] = field(default_factory=dict)
    uploaded: list[str] = field(default_factory=list)

    @property
    def missed(self) -> list[str]:
        return [h for h, o in self.outcomes.items() if not o.ok]

    def raise_first(self) -> None:
        """For a command that cannot go on when any host was not told: that host's error."""
        for o in self.outcomes.values():
            if o.error is not None:
                raise o.error


def typed(host: str, stack: str, docs: Iterable[Mapping[str, Any]]) -> tuple[ContainerSpec, ...]:
    """The containers specs.py builds, read as the agent will read them (drfleet_agent.spec):
    a spec the agent would refuse is refused here, before any host is told."""
    try:
        return tuple(
            container(dict(d), f"{host}: {stack}.containers[{i}]") for i, d in enumerate(docs)
        )
    except SpecError as exc:
        raise DrfleetError(
            f"a container drfleet built is not one the agent takes: {exc}",
            where=host,
            fix="report it (DRFLEET_DEBUG=1 shows where)",
        ) from None


def docs_of(
    intent: Intent, generation: int | None, labels: Mapping[str, str]
) -> list[tuple[Stack, DesiredState]]:
    """Each stack of the intent as the agent's desired state, stamped with its generation
    and labelled when owned (pure)."""
    out = []
    for s in intent.stacks:
        gen = s.generation if s.generation is not None else generation
        if gen is None:
            raise ValueError(f"{s.name} on {s.host}: no generation")
        containers = [
            dataclasses.replace(c, labels={**c.labels, **labels}) if s.owned else c
            for c in s.containers
        ]
        out.append((s, DesiredState(FLEET, s.run_id, gen, containers, s.name)))
    return out


def refusal(intent: Intent) -> str | None:
    """Why an intent cannot be carried out as it stands (pure): one that starts containers
    must carry a preflight; one stack per host and name."""
    seen: set[tuple[str, str]] = set()
    for s in intent.stacks:
        if (s.host, s.name) in seen:
            return f"{intent.what}: stack {s.name} twice for {s.host}"
        seen.add((s.host, s.name))
    if any(s.containers for s in intent.stacks) and intent.preflight is None:
        return f"{intent.what}: starts containers without a preflight"
    if intent.owner is None and any(s.owned for s in intent.stacks):
        return f"{intent.what}: owned stacks but no owner"
    return None


def fenced_after(
    previous: runstate.RunState | None, told: set[str], down: frozenset[str], generation: int
) -> dict[str, int]:
    """The fence a saved record carries (pure): the hosts still to be told from before, but
    those told now, and the hosts down now at this generation."""
    kept = {h: g for h, g in (previous.fence if previous else {}).items() if h not in told}
    return {**kept, **{h: generation for h in sorted(down)}}


@contextlib.contextmanager
def opened(hosts: Mapping[str, Host], options: Options) -> Iterator[dict[str, Session]]:
    """A session per host (connected on first use), all closed at the end."""
    sessions = {name: session(h, options) for name, h in hosts.items()}
    try:
        yield sessions
    finally:
        for s in sessions.values():
            s.close()


def execute(
    intent: Intent,
    env_dir: Path,
    sessions: Mapping[str, Session],
    limit: int,
    board: Board | None = None,
) -> Executed:
    """Carries the intent out in the order of this module's docstring; sessions: one for
    every host it names (the caller's: it may have asked them already)."""
    problem = refusal(intent)
    if problem:
        raise ValueError(problem)
    missing = [h for h in intent.hosts if h not in sessions]
    if missing:
        raise ValueError(f"{intent.what}: no session for {', '.join(missing)}")
    done = Executed(None)
    with runstate.locked(env_dir):
        record = intent.record
        previous = runstate.load(env_dir)
        if isinstance(record, SaveRun) and record.based_on is not None:
            now = previous.generation if previous else None
            if now != record.based_on:
                raise DrfleetError(
                    f"the run record changed while {intent.what} read the fleet (another "
                    "drfleet command from this env dir); nothing was changed",
                    where=str(runstate.path(env_dir)),
                    fix="run it again",
                )
        if any(s.generation is None for s in intent.stacks):
            done.generation = runstate.next_generation(env_dir)
        owned = any(s.owned for s in intent.stacks)
        labels = (
            training.owner_labels(runstate.identity(env_dir), env_dir, intent.owner)
            if owned
            else {}
        )
        docs = docs_of(intent, done.generation, labels)
        if intent.preflight is not None:
            _preflight(intent.preflight, docs, sessions, limit)
        if intent.adopt is not None:
            training.adopt_credentials(env_dir, dict(intent.adopt))
        early = [(s, d) for s, d in docs if s.early]
        if early:
            _early(early, sessions, limit, board)
        if intent.upload is not None:
            done.uploaded = _upload(intent.upload, sessions, board)
        if isinstance(record, SaveRun) and done.generation is not None:
            told = {s.host for s, _ in docs if not s.early}
            runstate.save(
                env_dir,
                runstate.RunState(
                    record.run_id,
                    record.bucket,
                    record.prefix,
                    done.generation,
                    record.plan,
                    fenced_after(previous, told, record.down, done.generation),
                ),
            )
    if intent.reach is not None:
        r = intent.reach
        converge.reach_check(r.prepared, dict(sessions), r.trainer, board, r.keys)
    late = [(s, d) for s, d in docs if not s.early]
    done.outcomes = _apply(intent, late, sessions, limit, board)
    _complete(intent, env_dir, done, {s.host: s.generation for s, _ in late})
    return done


def _preflight(
    pre: Preflight,
    states: list[tuple[Stack, DesiredState]],
    sessions: Mapping[str, Session],
    limit: int,
) -> None:
    """converge.shims for the hosts about to run workers, then sharing.conflicts per stack
    name over the stacks that are not forced (a forced one is obeyed whatever a host holds)."""
    docs = [(s, st.document()) for s, st in states]
    starting: dict[str, dict[str, Any]] = {}
    for s, d in docs:
        if d["containers"]:
            starting.setdefault(s.host, {"containers": []})["containers"] += d["containers"]
    converge.shims(dict(sessions), starting, limit)
    by_name: dict[str, dict[str, dict[str, Any]]] = {}
    for s, d in docs:
        if not s.force:
            by_name.setdefault(s.name, {})[s.host] = d
    if not by_name:
        return
    held = pre.held
    if held is None:
        hosts = sorted({h for group in by_name.values() for h in group})
        held = converge.statuses(dict(sessions), hosts, limit)
    for group in by_name.values():
        sharing.conflicts(dict(held), group, pre.replace)


def _early(
    early: list[tuple[Stack, DesiredState]],
    sessions: Mapping[str, Session],
    limit: int,
    board: Board | None,
) -> None:
    """The stacks the rest needs running first; any failure stops the execution."""
    for s, doc in early:
        if board:
            board.update(s.host, f"starting {', '.join(c.name for c in doc.containers)}")
        agent_client.apply(sessions[s.host], doc, s.wait, s.force, s.clear)


def _upload(up: Upload, sessions: Mapping[str, Session], board: Board | None) -> list[str]:
    p = up.prepared
    creds = dict(up.creds)
    if board:
        board.update(up.trainer, "uploading")
    remote = storage.direct(p.cfg, creds)
    if remote is not None:
        return storage.upload(remote, p, up.wipe, up.live)
    tsess = sessions[up.trainer]
    with forward(tsess, reach(tsess.host.publish_address), 9000) as port:
        s3 = storage.s3_client(
            f"http://127.0.0.1:{port}", creds, p.cfg.setting("DR_AWS_APP_REGION")
        )
        storage.wait(s3)
        return storage.upload(s3, p, up.wipe, up.live)


def _apply(
    intent: Intent,
    docs: list[tuple[Stack, DesiredState]],
    sessions: Mapping[str, Session],
    limit: int,
    board: Board | None,
) -> dict[str, Outcome[HostStatus]]:
    """Each host's stacks in their order (files staged first where workers or an evaluation
    start), then its after-steps; hosts side by side. One outcome per host: its agent's last
    status, or the first error."""
    per_host: dict[str, list[tuple[Stack, DesiredState]]] = {h: [] for h in intent.hosts}
    for s, d in docs:
        per_host[s.host].append((s, d))
    after = {a.host: a for a in intent.after}

    def one(host: Host) -> HostStatus:
        sess = sessions[host.name]
        st: HostStatus | None = None
        for s, doc in per_host[host.name]:
            if s.when_alone and (st is None or set(st.agent.stacks) - ALONGSIDE != {s.name}):
                continue
            if board:
                board.update(host.name, f"converging {len(doc.containers)} containers")
            if intent.staged:
                converge.stage(sess, dict(intent.staged), doc.document())
            st = agent_client.apply(sess, doc, s.wait, s.force, s.clear)
        if host.name in after:
            remove_sagemaker(sess, after[host.name].run_id)
        if st is None:
            st = agent_client.status(sess)
        if board:
            board.done(host.name, "running")
        return st

    hosts = [h for h in per_host if per_host[h] or h in after]
    return {o.host.name: o for o in fan_out([sessions[h].host for h in hosts], one, limit=limit)}


def _complete(
    intent: Intent, env_dir: Path, done: Executed, generations: dict[str, int | None]
) -> None:
    """What becomes of the record once the hosts were told."""
    record = intent.record
    if isinstance(record, Fenced):
        told = {h: g for h, g in generations.items() if g is not None and done.outcomes[h].ok}
        if told:
            runstate.fenced(env_dir, told)
    elif isinstance(record, EndRun) and done.generation is not None:
        with runstate.locked(env_dir):
            state = runstate.load(env_dir)
            missed = {h: done.generation for h in done.missed}
            if state and missed:
                state.plan = Plan(state.plan.trainer, [])
                state.generation, state.fence = done.generation, missed
                runstate.save(env_dir, state)
            elif state:
                runstate.clear(env_dir)

"""Reconciliation as a pure function: (desired, what runs, restart records, now) -> actions.

Identity lives on the container (kubelet's way): labels say which fleet, run and spec it was
made from, so a restarted agent re-adopts what runs, replaces what drifted, and removes what
is no longer wanted. A container without our labels is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drfleet_agent.spec import ContainerSpec, DesiredState, Fleetwide

L_FLEET, L_RUN, L_NAME, L_HASH, L_ROLE = (
    "drfleet.fleet",
    "drfleet.run",
    "drfleet.name",
    "drfleet.spec-hash",
    "drfleet.role",
)


@dataclass(frozen=True)
class Backoff:
    base: float = 10.0
    cap: float = 300.0
    reset_after: float = 600.0  # this long running cleanly forgives earlier crashes

    def delay(self, crashes: int) -> float:
        return float(min(self.base * 2 ** max(0, crashes), self.cap))


DEFAULT_BACKOFF = Backoff()


@dataclass(frozen=True)
class Observed:
    """One container as dockerd reports it."""

    id: str
    name: str
    labels: dict[str, str]
    status: str  # created | running | restarting | paused | exited | dead | removing
    exit_code: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    error: str = ""
    ports: dict[str, int] = field(default_factory=dict)  # published: container -> host port
    addresses: dict[str, str] = field(default_factory=dict)  # container port -> host address

    @property
    def ours(self) -> bool:
        return L_NAME in self.labels and L_FLEET in self.labels


@dataclass
class Record:
    """What the agent remembers of one desired container, across its own restarts."""

    restarts: int = 0
    crashes: int = 0  # consecutive restarts without a clean run of reset_after
    last_exit_code: int | None = None
    last_error: str = ""
    container_id: str = ""


@dataclass(frozen=True)
class Create:
    spec: ContainerSpec
    replaces: str | None = None  # id of a drifted container removed first


@dataclass(frozen=True)
class Start:
    spec: ContainerSpec
    id: str
    restart: bool  # False: first start of a created container
    exit_code: int = 0
    crashes: int = 0  # consecutive crashes once this restart is done
    outage: bool = False  # exited while dockerd was down: not the container's fault


@dataclass(frozen=True)
class Remove:
    id: str
    name: str
    reason: str


@dataclass(frozen=True)
class Conflict:
    spec: ContainerSpec
    message: str


Action = Create | Start | Remove | Conflict


@dataclass
class Decision:
    actions: list[Action] = field(default_factory=list)
    waiting: dict[str, float] = field(default_factory=dict)  # name -> when it may restart
    done: set[str] = field(default_factory=set)  # exited and not to be restarted
    forgive: set[str] = field(default_factory=set)  # ran cleanly long enough: reset crashes

    @property
    def next_due(self) -> float | None:
        return min(self.waiting.values()) if self.waiting else None


def decide(
    desired: DesiredState | Fleetwide,
    observed: list[Observed],
    records: dict[str, Record],
    now: float,
    backoff: Backoff = DEFAULT_BACKOFF,
    outage: tuple[float, float] | None = None,
) -> Decision:
    """What to do now. `outage` is (from, to) when dockerd was unreachable: exits within it
    are restarted at once and not counted as crashes."""
    plan = Decision()
    wanted = {s.name: s for s in desired.containers}
    mine = [o for o in observed if o.ours and o.labels.get(L_FLEET) == desired.fleet]
    by_name: dict[str, list[Observed]] = {}
    for o in mine:
        by_name.setdefault(o.labels[L_NAME], []).append(o)

    for o in mine:
        if o.labels[L_NAME] not in wanted:
            plan.actions.append(Remove(o.id, o.labels[L_NAME], "no longer desired"))

    for name, spec in wanted.items():
        want_hash = spec.spec_hash(desired.run_of(name))
        have = by_name.get(name, [])
        current = [o for o in have if o.labels.get(L_HASH) == want_hash]
        keep = max(current, key=lambda o: (o.status == "running", o.started_at or 0), default=None)
        for o in have:
            if o is not keep:
                reason = "spec changed" if o.labels.get(L_HASH) != want_hash else "duplicate"
                plan.actions.append(Remove(o.id, name, reason))
        if keep is None:
            squatter = next((o for o in observed if o.name == name and not o.ours), None)
            if squatter is not None:
                plan.actions.append(
                    Conflict(
                        spec,
                        (
                            f"a container named {name!r} exists that drfleet did not create "
                            f"({squatter.id[:12]}); drfleet leaves it alone: rename or remove it"
                        ),
                    )
                )
                continue
            replaced = next((o.id for o in have), None)
            plan.actions.append(Create(spec, replaces=replaced))
            continue
        _existing(plan, spec, keep, records.get(name, Record()), now, backoff, outage)
    return plan


def _existing(
    plan: Decision,
    spec: ContainerSpec,
    o: Observed,
    rec: Record,
    now: float,
    backoff: Backoff,
    outage: tuple[float, float] | None,
) -> None:
    if o.status in ("running", "restarting", "removing"):
        if rec.crashes and o.started_at is not None and now - o.started_at >= backoff.reset_after:
            plan.forgive.add(spec.name)
        return
    if o.status == "paused":
        return  # someone paused it on purpose; not ours to second-guess
    if o.status == "created":
        plan.actions.append(Start(spec, o.id, restart=False))
        return
    # exited or dead
    if spec.restart == "never" or (spec.restart == "on-failure" and o.exit_code == 0):
        plan.done.add(spec.name)
        return
    finished = o.finished_at or now
    if outage and outage[0] - 1 <= finished <= outage[1] + 1:
        plan.actions.append(
            Start(spec, o.id, restart=True, exit_code=o.exit_code, crashes=rec.crashes, outage=True)
        )
        return
    crashes = rec.crashes
    if (
        o.started_at is not None
        and o.finished_at is not None
        and o.finished_at - o.started_at >= backoff.reset_after
    ):
        crashes = 0
    due = finished + backoff.delay(crashes)
    if now >= due:
        plan.actions.append(
            Start(spec, o.id, restart=True, exit_code=o.exit_code, crashes=crashes + 1)
        )
    else:
        plan.waiting[spec.name] = due

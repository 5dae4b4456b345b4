"""train, status, stop, --rebalance: each edits the run record (plan, generation, fence) and
converges the hosts to what it now says. The decisions are pure (training.prepare and
training.desired, plan.rebalance, observe.run_summary); the pushing is converge's."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from drfleet.drfc import checks, config
from drfleet.errors import DrfleetError, host_fields
from drfleet.hosts import agent_client
from drfleet.hosts.agent_client import ContainerStatus, HostStatus
from drfleet.hosts.inventory import Host, Inventory
from drfleet.hosts.remote import Options, Outcome, fan_out, session
from drfleet.names import METRICS_STACK, MINIO_STACK, Run
from drfleet.runs import (
    capacity,
    converge,
    execute,
    metrics,
    observe,
    placement,
    runstate,
    sharing,
    specs,
    storage,
    training,
)
from drfleet.runs.execute import Preflight, Reach, SaveRun, Stack
from drfleet.runs.results import HostResult, RebalanceResult, StopResult, TrainResult
from drfleet.runs.sagemaker import sagemaker_of
from drfleet.ui import Board


def train(
    inv: Inventory,
    env_dir: Path,
    options: Options,
    workers: int,
    wipe: bool,
    board: Board | None,
    replace: bool = False,
) -> TrainResult:
    """replace: take the place of another env dir's run of the same DR_RUN_ID on the hosts
    (else refused). Another run (another DR_RUN_ID) goes on beside this one: this run gets
    the vCPUs it leaves (sharing.room) and shares its minio."""
    caps = capacity.of_hosts(inv, options)
    wanted = config.load(env_dir, workers or None)
    run = checks.run(wanted)
    if board:
        options = dataclasses.replace(options, notice=board.update)
        for h in caps:
            board.update(h, "asking its agent")
    with execute.opened({h: inv.hosts[h] for h in caps}, options) as sessions:
        unreached: dict[str, str] = {}
        held = converge.statuses(sessions, list(caps), options.limit, unreached)
        left, shared = sharing.room(caps, held, run.stack)
        keep = (
            None if wipe else sharing.live_plan(runstate.load(env_dir), run, held, wanted.workers)
        )
        try:
            if keep is not None and {keep.trainer, *keep.by_host()} <= set(caps):
                p = training.prepare_from(env_dir, caps, keep, set(), inv)
                shared = []  # placed already: nothing moves for what came beside it since
            else:
                p = training.prepare(env_dir, left, workers)
        except DrfleetError as exc:
            if not shared:
                raise
            raise DrfleetError(
                f"{exc.what} (other runs share these hosts: {'; '.join(shared)})",
                where=exc.where,
                fix=exc.fix,
            ) from None
        converge.reached(unreached, {p.plan.trainer, *(w.host for w in p.plan.workers)})
        p.plan.notes.extend(shared)
        t = p.plan.trainer
        there = held[t].agent.stacks if t in held else {}
        if metrics.wanted(p.cfg.system) and METRICS_STACK not in there:
            p.plan.notes.append(
                f"DR_TELEGRAF_HOST=telegraf and no metrics stack runs on {t}: the workers' "
                "metrics go nowhere until `drfleet metrics` starts it"
            )
        if shared and left[t].vcpus < caps[t].trainer_vcpus:
            p.plan.warnings.append(
                f"{t} has {left[t].vcpus} vCPUs left beside other runs and this run's trainer "
                f"takes {caps[t].trainer_vcpus}: the trainers share its CPUs"
            )
        tsess = sessions[t]
        local = p.cfg.storage == "local"
        mine = storage.run_credentials(p.cfg, env_dir)
        minio_held = agent_client.held(tsess, MINIO_STACK) if local else None
        if local:
            sharing.minio_where(held, t)
        creds = converge.minio_keys(minio_held, mine) if local else mine
        if local:
            p.plan.notes.append(storage.minio_keys_note(p.cfg, creds))
        if creds != mine:
            p.plan.notes.append(
                f"the fleet's minio on {t} was started from another env dir: "
                "its keys are now this env dir's too (.drfleet/minio-credentials.json)"
            )
        storage.direct(p.cfg, creds)  # checked before anything changes
        live = not wipe and converge.has_container(tsess, run.rlcoach)
        intent = train_intent(
            p,
            creds,
            inv.hosts[t].publish_address,
            start_minio=local and minio_held is None,
            adopt=creds != mine,
            wipe=wipe,
            live=live,
            replace=replace,
            held=held,
        )
        done = execute.execute(intent, env_dir, sessions, options.limit, board)
    return TrainResult(
        told(done.outcomes),
        run.id,
        p.plan,
        done.uploaded,
        live and not done.uploaded,
        done.generation,
    )


def run_stacks(p: training.Prepared, creds: dict[str, str], skip: set[str]) -> list[Stack]:
    """The run's stack for every host of p's capacities but skip (an empty one tells a host
    to run none of it), owned (pure)."""
    docs = training.desired(p, creds, 0)
    return [
        Stack(h, d["stack"], d["run_id"], execute.typed(h, d["stack"], d["containers"]), owned=True)
        for h, d in docs.items()
        if h not in skip
    ]


def train_intent(
    p: training.Prepared,
    creds: dict[str, str],
    address: str,
    start_minio: bool,
    adopt: bool,
    wipe: bool,
    live: bool,
    replace: bool,
    held: dict[str, HostStatus],
) -> execute.Intent:
    """What train does, given what it read (pure): the fleet's minio first on the trainer
    when none runs there (DR_CLOUD=local), minio's running keys adopted, the run's files to
    S3, the record, the S3 reach check when another host must reach it, then every host's
    stack of the run with the files workers mount staged."""
    trainer, cfg = p.plan.trainer, p.cfg
    stacks = run_stacks(p, creds, set())
    if start_minio:
        minio = specs.minio_stack(cfg, creds, address, 0)
        stacks.insert(
            0,
            Stack(
                trainer,
                MINIO_STACK,
                "",
                execute.typed(trainer, MINIO_STACK, minio["containers"]),
                wait=60,
                early=True,
            ),
        )
    local = cfg.storage == "local"
    return execute.Intent(
        "train",
        tuple(stacks),
        preflight=Preflight(replace, held),
        record=SaveRun(
            checks.run(cfg).id,
            cfg.setting("DR_LOCAL_S3_BUCKET"),
            cfg.setting("DR_LOCAL_S3_MODEL_PREFIX"),
            p.plan,
        ),
        adopt=creds if adopt else None,
        upload=execute.Upload(p, creds, trainer, wipe, live),
        reach=Reach(p, trainer, bool(creds)) if len(p.caps) > 1 or not local else None,
        staged=p.staged,
        owner=cfg,
    )


def told(
    outcomes: dict[str, Outcome[HostStatus]], containers: bool = True
) -> dict[str, HostResult]:
    return {
        h: HostResult.of(o.unreachable, o.error, o.value, containers) for h, o in outcomes.items()
    }


STATUS_CONNECT_TIMEOUT = 4.0  # with one retry, a host that does not answer shows in ~9 s


def status(
    inv: Inventory,
    options: Options,
    env_dir: Path | None = None,
    quick: bool = True,
    tell: bool = False,
    progress: bool = True,
    only: set[str] | None = None,
    drain: bool = False,
) -> observe.FleetReport:
    """Every host's agent status. With the run record of env_dir: the run's slots, which of
    them are lost with an unreachable host, and the hosts whose slots moved while they were
    away (fence_pending). It only reads, unless tell: then such a host is told now to
    drop its workers (the latest assignment wins). Quick: a short connect timeout and one
    retry, so a dead host shows within seconds; --rebalance asks with the inventory's own
    timeouts before it moves anything. only: the hosts to ask (--limit; None: all)."""
    state = runstate.load(env_dir) if env_dir else None
    if quick:
        options = dataclasses.replace(
            options,
            connect_timeout=STATUS_CONNECT_TIMEOUT,
            connect_retries=min(1, options.connect_retries),
        )
    names = {h.name for h in inv.hosts.values() if h.roles}
    if state:
        names |= {w.host for w in state.plan.workers} | {state.plan.trainer} | set(state.fence)
    hosts = [inv.hosts[n] for n in inv.hosts if n in names and (only is None or n in only)]

    def one(host: Host) -> observe.HostReport:
        with session(host, options) as s:
            return observe.HostReport(host.name, True, agent_client.status(s))

    reports: dict[str, observe.HostReport] = {}
    for o in fan_out(hosts, one, limit=options.limit):
        if o.error or o.value is None:
            reports[o.host.name] = _failed(o.host.name, not o.unreachable, o.error)
        else:
            reports[o.host.name] = o.value
    if tell and state and env_dir:  # only --converge tells: plain status writes nothing
        _tell_fenced(inv, options, env_dir, state, reports)
    drained: dict[str, Any] | None = None
    if drain and state and env_dir and observe.leaving(state, reports):
        drained = _drain(inv, options, env_dir, state, reports)
        if "moved" in drained:  # the hosts changed: what they hold now
            after = status(inv, options, env_dir, quick, False, progress, only)
            if after.run is not None:
                after.run["drained"] = drained
            return after
    report = observe.FleetReport(reports)
    if state and env_dir:
        report.run = observe.run_summary(state, reports)
        if drained:
            report.run["drained"] = drained
        trainer = reports.get(state.plan.trainer)
        if progress and trainer is not None and trainer.status is not None:
            report.run["progress"] = _progress(inv, options, env_dir, state)
    return report


def _drain(
    inv: Inventory,
    options: Options,
    env_dir: Path,
    state: runstate.RunState,
    reports: dict[str, observe.HostReport],
) -> dict[str, Any]:
    """status --converge: the slots of hosts EC2 is about to interrupt move now (as
    --rebalance moves them; unreachable hosts keep theirs). What moved, or why nothing could
    (said by status, which does not fail on it)."""
    try:
        moved = _move(inv, env_dir, options, state, reports, set(), None)
    except DrfleetError as exc:
        said = host_fields(True, exc)
        return {"error": said["error"], "fix": said["fix"]}
    return {"moved": moved.as_json()["moved"], "leaving": moved.leaving}


def _failed(host: str, reachable: bool, error: DrfleetError | None) -> observe.HostReport:
    said = host_fields(reachable, error or "no status")
    return observe.HostReport(host, reachable, None, str(said["error"]), fix=str(said["fix"] or ""))


def fence_intent(state: runstate.RunState, hosts: list[str]) -> execute.Intent:
    """status --converge (pure): each host of the record's fence that answered is told, at
    the generation its fence holds, to run nothing of this run's training; told, it leaves
    the fence."""
    run = Run(state.run_id or "0")
    stacks = tuple(
        Stack(h, run.stack, state.run_id, (), wait=60, generation=state.fence[h])
        for h in hosts
        if h in state.fence
    )
    return execute.Intent("tell moved hosts", stacks, record=execute.Fenced())


def _tell_fenced(
    inv: Inventory,
    options: Options,
    env_dir: Path,
    state: runstate.RunState,
    reports: dict[str, observe.HostReport],
) -> None:
    """The hosts of the fence that answered are told now; their reports say what they
    dropped (or why they could not be told)."""
    intent = fence_intent(state, [h for h in state.fence if reports.get(h, _NONE).status])
    if not intent.stacks:
        return
    with execute.opened({h: inv.hosts[h] for h in intent.hosts}, options) as sessions:
        done = execute.execute(intent, env_dir, sessions, options.limit)
    for h, o in done.outcomes.items():
        before = reports[h].status
        if o.ok and o.value is not None and before is not None:
            reports[h] = observe.HostReport(
                h, True, o.value, dropped=[c.name for c in before.containers]
            )
        else:
            reports[h] = _failed(h, not o.unreachable, o.error)


def _progress(
    inv: Inventory, options: Options, env_dir: Path, state: runstate.RunState
) -> dict[str, Any]:
    """How the run trains (training_progress), or why that cannot be read now: status shows
    what it can and never fails on it."""
    from drfleet.runs import s3access

    try:
        with s3access.run_s3(inv, env_dir, options, state.plan.trainer, start=False) as (s3, _):
            if s3 is None:
                return {"error": "minio does not run on the trainer"}
            return _read_progress(s3, state.bucket, state.prefix, state.plan)
    except Exception as exc:  # S3 or the forward failing must not hide the hosts' status
        return {"error": str(exc).splitlines()[0][:200]}


def _read_progress(s3: Any, bucket: str, prefix: str, plan: placement.Plan) -> dict[str, Any]:
    from drfleet.runs import training_progress

    return training_progress.summary(*_read_metrics(s3, bucket, prefix, plan), plan)


def _read_metrics(
    s3: Any, bucket: str, prefix: str, plan: placement.Plan
) -> tuple[dict[str, Any] | None, dict[int, dict[str, Any] | None]]:
    """The run's S3: the trainer's deepracer_checkpoints.json and each worker's metrics, at
    the key its params file names (METRICS_S3_OBJECT_KEY)."""

    import yaml

    from drfleet.runs import training_progress

    raw = storage.read(s3, bucket, f"{prefix}/model/deepracer_checkpoints.json")
    docs: dict[int, dict[str, Any] | None] = {}
    keys: dict[str, str] = {}
    for w in plan.workers:
        if w.config_file not in keys:
            params = storage.read(s3, bucket, f"{prefix}/{w.config_file}")
            loaded = yaml.safe_load(params) if params else {}
            keys[w.config_file] = str((loaded or {}).get("METRICS_S3_OBJECT_KEY", ""))
        key = training_progress.metrics_key(keys[w.config_file], w.slot, len(plan.workers))
        body = storage.read(s3, bucket, key) if keys[w.config_file] else None
        docs[w.slot] = json.loads(body) if body else None
    return (json.loads(raw) if raw else None), docs


def progress_series(inv: Inventory, options: Options, env_dir: Path) -> dict[str, Any]:
    """Each completed iteration's mean reward and progress (training_progress.per_iteration)
    of the run started from env_dir, or why it cannot be read now (never starts minio)."""
    from drfleet.runs import s3access, training_progress

    state = runstate.load(env_dir)
    if state is None:
        return {"error": f"no run was started from {env_dir}"}
    try:
        with s3access.run_s3(inv, env_dir, options, state.plan.trainer, start=False) as (s3, _):
            if s3 is None:
                return {"error": "minio does not run on the trainer"}
            checkpoints, docs = _read_metrics(s3, state.bucket, state.prefix, state.plan)
    except Exception as exc:  # the page shows why and asks again later
        return {"error": str(exc).splitlines()[0][:200]}
    saved = training_progress.iterations(checkpoints)
    return {
        "prefix": state.prefix,
        "saved": saved,
        "iterations": training_progress.per_iteration(docs, state.plan, saved),
    }


_NONE = observe.HostReport("", False)


def rebalance(
    inv: Inventory, env_dir: Path, options: Options, board: Board | None
) -> RebalanceResult:
    """Moves the slots of unreachable hosts, and of hosts EC2 is about to interrupt, to hosts
    with room, then converges every reachable host of the run to the new plan (unchanged
    containers are left alone; a leaving host is told to drop its slots). A re-run finishes
    what a killed one started."""
    state = _record(env_dir)
    st = status(inv, options, env_dir, quick=False, tell=True)  # sure it is down
    state = runstate.load(env_dir) or state  # status may have told hosts meanwhile
    down = {h for h, r in st.hosts.items() if not r.reachable}
    return _move(inv, env_dir, options, state, st.hosts, down, board)


def _record(env_dir: Path) -> runstate.RunState:
    state = runstate.load(env_dir)
    if state is None:
        raise DrfleetError(
            f"no run was started from {env_dir}",
            where=str(runstate.path(env_dir)),
            fix="run `drfleet train` (with the same --env-dir) first",
        )
    return state


def _move(
    inv: Inventory,
    env_dir: Path,
    options: Options,
    state: runstate.RunState,
    reports: dict[str, observe.HostReport],
    down: set[str],
    board: Board | None,
) -> RebalanceResult:
    """The slots of `down` (unreachable: fenced) and of the hosts with an interruption notice
    (reachable: told now) go to the other hosts with room; unreachable hosts are neither asked
    nor told (their slots stay unless they are in `down`)."""
    unreachable = {h for h, r in reports.items() if not r.reachable}
    going = observe.leaving(state, reports)
    notice = observe.notices(reports)
    if state.plan.trainer in notice:
        n = notice[state.plan.trainer]
        raise DrfleetError(
            f"the trainer host {state.plan.trainer} has an EC2 spot interruption notice "
            f"({n['action']} at {n['time']}): the trainer cannot move, so nothing was moved",
            fix=observe.TRAINER_LOST
            + ". An on-demand trainer (`drfleet up` without --trainer-spot) is not interrupted",
        )
    caps = capacity.of_hosts(inv, options, frozenset(unreachable))
    held = {h: r.status for h, r in reports.items() if r.status is not None}
    caps, _ = sharing.room(caps, held, Run(state.run_id or "0").stack)
    p = training.prepare_from(env_dir, caps, state.plan, unreachable, inv)
    new_plan, moved = placement.rebalance(state.plan, list(p.caps.values()), down | going)
    p = dataclasses.replace(p, plan=new_plan)
    creds = storage.run_credentials(p.cfg, env_dir)
    intent = rebalance_intent(p, state, creds, unreachable, down, held)
    was = {str(w.slot): w.host for w in state.plan.workers}
    with execute.opened({h: inv.hosts[h] for h in intent.hosts}, options) as sessions:
        done = execute.execute(intent, env_dir, sessions, options.limit, board)
    return RebalanceResult(
        told(done.outcomes),
        {str(k): (was[str(k)], h) for k, h in moved.items()},
        sorted(down),
        new_plan,
        done.generation,
        leaving={h: notice[h] for h in sorted(going)},
    )


def rebalance_intent(
    p: training.Prepared,
    state: runstate.RunState,
    creds: dict[str, str],
    skip: set[str],
    down: set[str],
    held: dict[str, HostStatus],
) -> execute.Intent:
    """--rebalance (pure): every host of p but skip (unreachable) gets the run's stack of p's
    (moved) plan, a host whose slots all moved an empty one; the down hosts that ran workers
    are fenced with the new generation; refused when the record changed since `state` was
    read."""
    workers = {w.host for w in state.plan.workers}
    return execute.Intent(
        "rebalance",
        tuple(run_stacks(p, creds, skip)),
        preflight=Preflight(held=held),
        record=SaveRun(
            state.run_id,
            state.bucket,
            state.prefix,
            p.plan,
            down=frozenset(h for h in down if h in workers),
            based_on=state.generation,
        ),
        staged=p.staged,
        owner=p.cfg,
    )


def locate(inv: Inventory, options: Options, name: str) -> tuple[Host, ContainerStatus]:
    """The host that runs container `name`, and the container as its agent reports it."""
    found = status(inv, options).locate(name)
    if found is None:
        raise DrfleetError(f"no host runs {name}", fix="see `drfleet status`")
    return inv.hosts[found[0]], found[1]


def stop(
    inv: Inventory, options: Options, env_dir: Path, everything: bool = False, check: bool = False
) -> StopResult:
    """Ends the run env_dir drives (run_of: its training, its evaluation, and on the trainer
    the sagemaker container its rl_coach started, which no agent owns) on every host; other
    runs go on. minio goes too on a host that then runs nothing else. everything: every
    stack of drfleet's on every host, whichever run. Data in minio's directory stays. The
    run record goes, except that hosts which could not be told are remembered and told when
    next seen. A stop is obeyed whatever generation a host holds (the user asked for it)."""
    hosts = [h for h in inv.hosts.values() if h.roles]
    run = training.run_of(env_dir)
    if check:
        return _would_stop(hosts, options, run, everything)
    intent = stop_intent(run, [h.name for h in hosts], everything, trainers(hosts))
    with execute.opened({h.name: h for h in hosts}, options) as sessions:
        done = execute.execute(intent, env_dir, sessions, options.limit)
    return StopResult(told(done.outcomes, containers=False), None if everything else run.id)


def trainers(hosts: list[Host]) -> list[str]:
    return [h.name for h in hosts if "trainer" in h.roles]


def stop_intent(
    run: Run, hosts: list[str], everything: bool, trainer_hosts: list[str]
) -> execute.Intent:
    """stop (pure): on every host, the run's evaluation and training stacks end, and the
    fleet's minio when it is then all the host holds; everything: every stack, whichever
    run. Forced: a stop is obeyed whatever generation a host holds. On the trainers, the
    sagemaker container goes after. The record goes (hosts not told stay in its fence)."""
    stacks: list[Stack] = []
    for h in hosts:
        if everything:
            stacks.append(Stack(h, run.stack, run.id, (), wait=60, force=True, clear=True))
            continue
        stacks += [
            Stack(h, run.eval_stack, run.id, (), wait=60, force=True),
            Stack(h, run.stack, run.id, (), wait=60, force=True),
            Stack(h, MINIO_STACK, "", (), wait=60, force=True, when_alone=True),
        ]
    after = tuple(execute.Sagemaker(h, None if everything else run.id) for h in trainer_hosts)
    return execute.Intent("stop", tuple(stacks), record=execute.EndRun(), after=after)


def _would_stop(hosts: list[Host], options: Options, run: Run, everything: bool) -> StopResult:
    """stop --check: what stop would end on each host, read from its agent and docker; no
    host is told anything and env_dir is not touched."""

    def one(host: Host) -> list[str]:
        with session(host, options) as s:
            st = agent_client.status(s)
            stacks = set(st.agent.stacks) if everything else {run.eval_stack, run.stack}
            left = set(st.agent.stacks) - stacks - execute.ALONGSIDE
            if left == {MINIO_STACK}:  # the last run on the fleet's minio: it goes too
                stacks.add(MINIO_STACK)
            names = [c.name for c in st.containers if c.stack in stacks]
            if "trainer" in host.roles:
                which = None if everything else run.id
                names += [str(d.get("Name", "")).lstrip("/") for d in sagemaker_of(s, which)]
        return names

    said = {
        o.host.name: dataclasses.replace(
            HostResult.of(o.unreachable, o.error, None, False), would_stop=o.value or []
        )
        for o in fan_out(hosts, one, limit=options.limit)
    }
    return StopResult(said, None if everything else run.id, check=True)

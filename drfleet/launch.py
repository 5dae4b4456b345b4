"""train, status, stop, --rebalance: each edits the run record (plan, generation, fence) and
converges the hosts to what it now says. The decisions are pure (training.prepare and
training.desired, plan.rebalance, observe.run_summary); the pushing is converge's."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from drfleet import (
    agent_client,
    capacity,
    converge,
    observe,
    runstate,
    sharing,
    specs,
    storage,
    training,
)
from drfleet import plan as plan_mod
from drfleet.agent_client import ContainerStatus, HostStatus, reach
from drfleet.drfc import checks, config
from drfleet.errors import DrfleetError, host_fields
from drfleet.inventory import Host, Inventory
from drfleet.names import MINIO_STACK, SAGEMAKER_PATTERN, Run
from drfleet.remote import Options, Outcome, Session, fan_out, session
from drfleet.shell import cmd
from drfleet.tunnel import forward
from drfleet.ui import Board


def owned(ident: str, env_dir: Path, cfg: Any, docs: dict[str, Any]) -> dict[str, Any]:
    """The run's desired states, every container labelled with whose it is (specs.owned):
    ident is runstate.identity(env_dir)."""
    return specs.owned(docs, training.owner_labels(ident, env_dir, cfg))


def train(
    inv: Inventory,
    env_dir: Path,
    options: Options,
    workers: int,
    wipe: bool,
    board: Board | None,
    replace: bool = False,
) -> dict[str, Any]:
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
    sessions = {h: session(inv.hosts[h], options) for h in caps}
    try:
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
        if shared and left[t].vcpus < caps[t].trainer_vcpus:
            p.plan.warnings.append(
                f"{t} has {left[t].vcpus} vCPUs left beside other runs and this run's trainer "
                f"takes {caps[t].trainer_vcpus}: the trainers share its CPUs"
            )
        trainer = inv.hosts[p.plan.trainer]
        tsess = sessions[trainer.name]
        local = p.cfg.storage == "local"
        creds = storage.run_credentials(p.cfg, env_dir)
        minio_held, mine = None, creds
        if local:
            sharing.minio_where(held, trainer.name)
            minio_held = agent_client.held(tsess, MINIO_STACK)
            mine, creds = creds, converge.minio_keys(minio_held, env_dir, creds, adopt=False)
            if creds != mine:
                p.plan.notes.append(
                    f"the fleet's minio on {trainer.name} was started from another env dir: "
                    "its keys are now this env dir's too (.drfleet/minio-credentials.json)"
                )
        region = p.cfg.setting("DR_AWS_APP_REGION")
        remote = storage.direct(p.cfg, creds)  # checked before anything changes
        with runstate.locked(env_dir):
            generation = runstate.next_generation(env_dir)
            ident = runstate.identity(env_dir)
        docs = owned(ident, env_dir, p.cfg, training.desired(p, creds, generation))
        converge.preflight(sessions, docs, options.limit, replace, held)
        if local and creds != mine:  # not refused: the fleet minio's keys are this env dir's
            training.adopt_credentials(env_dir, creds)
        live = not wipe and converge.has_container(tsess, run.rlcoach)
        if board:
            board.update(trainer.name, "starting minio" if local else "uploading")
        if local:
            if minio_held is None:
                address = trainer.publish_address
                agent_client.apply(tsess, specs.minio_stack(p.cfg, creds, address, generation), 60)
            with forward(tsess, reach(trainer.publish_address), 9000) as port:
                s3 = storage.s3_client(f"http://127.0.0.1:{port}", creds, region)
                storage.wait(s3)
                uploaded = storage.upload(s3, p, wipe, live)
        else:
            uploaded = storage.upload(remote, p, wipe, live)
        with runstate.locked(env_dir):  # before any worker is told: a kill leaves a record
            previous = runstate.load(env_dir)
            runstate.save(
                env_dir,
                runstate.RunState(
                    run.id,
                    p.cfg.setting("DR_LOCAL_S3_BUCKET"),
                    p.cfg.setting("DR_LOCAL_S3_MODEL_PREFIX"),
                    generation,
                    p.plan,
                    {
                        h: g
                        for h, g in (previous.fence if previous else {}).items()
                        if h not in docs
                    },
                ),
            )
        if len(docs) > 1 or not local:
            converge.reach_check(p, sessions, trainer.name, board, bool(creds))
        outcomes = converge.push(
            sessions,
            docs,
            options.limit,
            board,
            before=lambda s, doc: converge.stage(s, p.staged, doc),
        )
    finally:
        for s in sessions.values():
            s.close()
    return {
        "run": run.id,
        "plan": p.plan.as_json(),
        "uploaded": uploaded,
        "resumed": live and not uploaded,
        "generation": generation,
        "hosts": {o.host.name: _host_result(o) for o in outcomes},
    }


def _host_result(o: Outcome[HostStatus]) -> dict[str, Any]:
    if o.error:
        return {
            "ok": False,
            "unreachable": o.unreachable,
            **host_fields(not o.unreachable, o.error),
        }
    containers = o.value.containers if o.value else []
    return {
        "ok": True,
        **host_fields(True, None),
        "containers": {c.name: c.state.value for c in containers},
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
            st = agent_client.status(s)
            if tell and state and host.name in state.fence:
                before = [c.name for c in st.containers]
                return observe.HostReport(
                    host.name, True, converge.fence(s, state, host.name), dropped=before
                )
        return observe.HostReport(host.name, True, st)

    reports: dict[str, observe.HostReport] = {}
    for o in fan_out(hosts, one, limit=options.limit):
        if o.error or o.value is None:
            said = host_fields(not o.unreachable, o.error or "no status")
            reports[o.host.name] = observe.HostReport(
                o.host.name, not o.unreachable, None, str(said["error"]), fix=str(said["fix"] or "")
            )
        else:
            reports[o.host.name] = o.value
    report = observe.FleetReport(reports)
    fence = state.fence if state else {}
    told = {h: g for h, g in fence.items() if reports.get(h, _NONE).dropped is not None}
    if state and env_dir and told:  # only --converge tells: plain status writes nothing
        runstate.fenced(env_dir, told)
    if state and env_dir:
        report.run = observe.run_summary(state, reports)
        trainer = reports.get(state.plan.trainer)
        if progress and trainer is not None and trainer.status is not None:
            report.run["progress"] = _progress(inv, options, env_dir, state)
    return report


def _progress(
    inv: Inventory, options: Options, env_dir: Path, state: runstate.RunState
) -> dict[str, Any]:
    """How the run trains (training_progress), or why that cannot be read now: status shows
    what it can and never fails on it."""
    from drfleet import models

    try:
        with models.run_s3(inv, env_dir, options, state.plan.trainer, start=False) as (s3, _):
            if s3 is None:
                return {"error": "minio does not run on the trainer"}
            return _read_progress(s3, state.bucket, state.prefix, state.plan)
    except Exception as exc:  # S3 or the forward failing must not hide the hosts' status
        return {"error": str(exc).splitlines()[0][:200]}


def _read_progress(s3: Any, bucket: str, prefix: str, plan: plan_mod.Plan) -> dict[str, Any]:
    from drfleet import training_progress

    return training_progress.summary(*_read_metrics(s3, bucket, prefix, plan), plan)


def _read_metrics(
    s3: Any, bucket: str, prefix: str, plan: plan_mod.Plan
) -> tuple[dict[str, Any] | None, dict[int, dict[str, Any] | None]]:
    """The run's S3: the trainer's deepracer_checkpoints.json and each worker's metrics, at
    the key its params file names (METRICS_S3_OBJECT_KEY)."""
    import json

    import yaml

    from drfleet import training_progress

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
    from drfleet import models, training_progress

    state = runstate.load(env_dir)
    if state is None:
        return {"error": f"no run was started from {env_dir}"}
    try:
        with models.run_s3(inv, env_dir, options, state.plan.trainer, start=False) as (s3, _):
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
) -> dict[str, Any]:
    """Moves the slots of unreachable hosts to hosts with room, then converges every reachable
    host of the run to the new plan (unchanged containers are left alone). A re-run finishes
    what a killed one started."""
    state = runstate.load(env_dir)
    if state is None:
        raise DrfleetError(
            f"no run was started from {env_dir}",
            where=str(runstate.path(env_dir)),
            fix="run `drfleet train` (with the same --env-dir) first",
        )
    st = status(inv, options, env_dir, quick=False, tell=True)  # sure it is down
    down = {h for h, r in st.hosts.items() if not r.reachable}
    with runstate.locked(env_dir):
        state = runstate.load(env_dir) or state  # status may have told hosts meanwhile
        caps = capacity.of_hosts(inv, options, frozenset(down))
        held = {h: r.status for h, r in st.hosts.items() if r.status is not None}
        caps, _ = sharing.room(caps, held, Run(state.run_id or "0").stack)
        p = training.prepare_from(env_dir, caps, state.plan, down, inv)
        new_plan, moved = plan_mod.rebalance(state.plan, list(p.caps.values()), down)
        generation = runstate.next_generation(env_dir)
        p = dataclasses.replace(p, plan=new_plan)
        docs = training.desired(p, storage.run_credentials(p.cfg, env_dir), generation)
        ident = runstate.identity(env_dir)
        docs = {h: d for h, d in owned(ident, env_dir, p.cfg, docs).items() if h not in down}
        fenced = {h: generation for h in down if h in {w.host for w in state.plan.workers}}
        was = {str(w.slot): w.host for w in state.plan.workers}
        sessions = {h: session(inv.hosts[h], options) for h in docs}
        try:
            converge.preflight(sessions, docs, options.limit, held=held)
            state = runstate.RunState(
                state.run_id,
                state.bucket,
                state.prefix,
                generation,
                new_plan,
                {**state.fence, **fenced},
            )
            runstate.save(env_dir, state)  # before any host is told: the record is what we intend
        except BaseException:
            for s in sessions.values():
                s.close()
            raise
    try:
        outcomes = converge.push(
            sessions,
            docs,
            options.limit,
            board,
            before=lambda s, doc: converge.stage(s, p.staged, doc),
        )
    finally:
        for s in sessions.values():
            s.close()
    return {
        "moved": {str(k): {"from": was[str(k)], "to": h} for k, h in moved.items()},
        "down": sorted(down),
        "plan": new_plan.as_json(),
        "generation": generation,
        "hosts": {o.host.name: _host_result(o) for o in outcomes},
    }


def locate(inv: Inventory, options: Options, name: str) -> tuple[Host, ContainerStatus]:
    """The host that runs container `name`, and the container as its agent reports it."""
    found = status(inv, options).locate(name)
    if found is None:
        raise DrfleetError(f"no host runs {name}", fix="see `drfleet status`")
    return inv.hosts[found[0]], found[1]


def stop(
    inv: Inventory, options: Options, env_dir: Path, everything: bool = False, check: bool = False
) -> dict[str, Any]:
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
    with runstate.locked(env_dir):
        generation = runstate.next_generation(env_dir)

    def one(host: Host) -> HostStatus:
        with session(host, options) as s:
            if everything:
                st = agent_client.apply(
                    s, agent_client.empty(run.stack, run.id, generation), 60, True, clear=True
                )
            else:
                for stack in (run.eval_stack, run.stack):
                    st = agent_client.apply(
                        s, agent_client.empty(stack, run.id, generation), 60, force=True
                    )
                if set(st.agent.stacks) == {MINIO_STACK}:  # the last run on the fleet's minio
                    st = agent_client.apply(
                        s, agent_client.empty(MINIO_STACK, "", generation), 60, force=True
                    )
            if "trainer" in host.roles:
                _remove_sagemaker(s, None if everything else run.id)
        return st

    outcomes = fan_out(hosts, one, limit=options.limit)
    with runstate.locked(env_dir):
        state = runstate.load(env_dir)
        missed = {o.host.name: generation for o in outcomes if not o.ok}
        if state and missed:
            state.plan = plan_mod.Plan(state.plan.trainer, [])
            state.generation, state.fence = generation, missed
            runstate.save(env_dir, state)
        elif state:
            runstate.clear(env_dir)
    return {
        "run": None if everything else run.id,
        "hosts": {
            o.host.name: {"ok": o.ok, **host_fields(not o.unreachable, o.error)} for o in outcomes
        },
    }


def _would_stop(hosts: list[Host], options: Options, run: Run, everything: bool) -> dict[str, Any]:
    """stop --check: what stop would end on each host, read from its agent and docker; no
    host is told anything and env_dir is not touched."""

    def one(host: Host) -> list[str]:
        with session(host, options) as s:
            st = agent_client.status(s)
            stacks = set(st.agent.stacks) if everything else {run.eval_stack, run.stack}
            left = set(st.agent.stacks) - stacks
            if left == {MINIO_STACK}:  # the last run on the fleet's minio: it goes too
                stacks.add(MINIO_STACK)
            names = [c.name for c in st.containers if c.stack in stacks]
            if "trainer" in host.roles:
                which = None if everything else run.id
                names += [str(d.get("Name", "")).lstrip("/") for d in _sagemaker_of(s, which)]
        return names

    outcomes = fan_out(hosts, one, limit=options.limit)
    return {
        "run": None if everything else run.id,
        "check": True,
        "hosts": {
            o.host.name: {
                "ok": o.ok,
                **host_fields(not o.unreachable, o.error),
                "would_stop": o.value or [],
            }
            for o in outcomes
        },
    }


def _remove_sagemaker(s: Session, run_id: str | None) -> None:
    """The SageMaker container rl_coach started for run_id (None: for any run), removed with
    its job folder."""
    ours = _sagemaker_of(s, run_id)
    if not ours:
        return
    s.run(
        cmd("docker", "rm", "-f", *(str(d["Id"]) for d in ours)),
        become=True,
        timeout=120,
        task="remove the sagemaker container",
    )
    jobs = sorted({j for d in ours if (j := job_dir(d))})
    if jobs:  # its docker-compose.yaml holds the run's keys (local mode writes them there)
        s.run(cmd("rm", "-rf", "--", *jobs), become=True, timeout=60, task="remove its job")


def _sagemaker_of(s: Session, run_id: str | None) -> list[dict[str, Any]]:
    """The SageMaker containers rl_coach started for run_id (None: for any run), inspected,
    as DRfC's stop.sh finds them: named `<10 chars>-algo-<i>-<5 chars>` by SageMaker's local
    mode (sagemaker 2.x local/image.py) and carrying the run in RUN_ID, which start.py hands
    it (DRfC greps the compose file holding that environment for RUN_ID=<id>)."""
    found = s.run(
        cmd("docker", "ps", "-aq", "--no-trunc", "--filter", f"name={SAGEMAKER_PATTERN}"),
        become=True,
        timeout=60,
        task="find the sagemaker container",
    ).stdout.split()
    if not found:
        return []
    inspected = s.run(
        cmd("docker", "inspect", *found),
        become=True,
        check=False,
        timeout=60,
        task="which run's sagemaker container",
        prints_secret=True,  # its environment holds the run's keys
    )
    try:
        docs = json.loads(inspected.stdout or "[]")
    except ValueError:
        docs = []
    return [
        d
        for d in docs
        if run_id is None or f"RUN_ID={run_id}" in ((d.get("Config") or {}).get("Env") or [])
    ]


SAGEMAKER_ROOT = "/tmp/sagemaker/"  # local mode's container_root (the simapp's config.yaml)


def job_dir(inspected: dict[str, Any]) -> str:
    """The local-mode job folder of an inspected sagemaker container, "" when it has none:
    <container_root>/<tmp>/, whose <host>/input is its /opt/ml/input (pure)."""
    for m in inspected.get("Mounts") or []:
        source = str(m.get("Source") or "")
        if m.get("Destination") != "/opt/ml/input" or not source.startswith(SAGEMAKER_ROOT):
            continue
        parts = source[len(SAGEMAKER_ROOT) :].split("/")
        if (
            len(parts) == 3
            and parts[2] == "input"
            and all(p and p not in (".", "..") for p in parts)
        ):
            return SAGEMAKER_ROOT + parts[0]
    return ""

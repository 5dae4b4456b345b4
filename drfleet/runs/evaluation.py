"""evaluate (DRfC's dr-start-evaluation / dr-stop-evaluation): the eval params to the run's
S3, one evaluation container on a host with room, in a stack of its own
(deepracer-eval-<DR_RUN_ID>) beside whatever that host already runs (training goes on),
and the evaluation's results as the simapp writes them. The decisions
(which host, the results table) are pure; the I/O is at the end."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drfleet.drfc import checks, config, eval_params, params
from drfleet.errors import DrfleetError
from drfleet.hosts import agent_client
from drfleet.hosts.inventory import Inventory
from drfleet.hosts.remote import Options, fan_out, session
from drfleet.localfs import atomic_write
from drfleet.names import Run
from drfleet.runs import (
    capacity,
    converge,
    execute,
    runstate,
    s3access,
    sharing,
    specs,
    storage,
    training,
)
from drfleet.runs.placement import Capacity, Plan
from drfleet.runs.results import EvalResults, EvalStarted

Tick = Callable[[str], None]


def choose_host(
    caps: dict[str, Capacity], plan: Plan | None, want: str | None
) -> tuple[str, list[str]]:
    """The host to evaluate on and warnings: `want` if given (a warning when it lacks room),
    else the robomaker host with the most vCPUs left beside the run's workers and trainer."""
    if want is not None:
        if want not in caps:
            raise DrfleetError(
                f"--host {want}: not a host of the inventory with a role",
                fix=f"one of: {', '.join(sorted(caps))}",
            )
        left = _free(caps, plan)[want]
        if left < caps[want].worker_vcpus:
            return want, [
                f"{want} has {left} vCPUs left beside the run, a worker needs "
                f"{caps[want].worker_vcpus}: the evaluation and training share them"
            ]
        return want, []
    free = _free(caps, plan)
    room = [h for h, c in caps.items() if c.robomaker and free[h] >= c.worker_vcpus]
    if not room:
        raise DrfleetError(
            "no host has room for an evaluation beside the run ("
            + ", ".join(f"{h}: {free[h]} vCPUs left" for h in sorted(caps))
            + ")",
            fix="name one with --host (it will share its CPUs), or add a host",
        )
    return max(room, key=lambda h: (free[h], h == (plan.trainer if plan else None), h)), []


def _free(caps: dict[str, Capacity], plan: Plan | None) -> dict[str, int]:
    used = {h: 0 for h in caps}
    if plan is not None:
        for w in plan.workers:
            if w.host in used:
                used[w.host] += caps[w.host].worker_vcpus
        if plan.trainer in used:
            used[plan.trainer] += caps[plan.trainer].trainer_vcpus
    return {h: c.vcpus - used[h] for h, c in caps.items()}


def gazebo_cpus(workers: int, vcpus: int) -> str:
    """The next CPU pair after the host's `workers` workers' (specs.gazebo_cpus gives the
    i-th worker of a host CPUs 2i and 2i+1)."""
    i, n = workers, max(1, vcpus)
    return ",".join(str(c) for c in sorted({(2 * i) % n, (2 * i + 1) % n}))


def rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The evaluation metrics the simapp writes (markov/metrics/s3_metrics.py, EvalMetrics:
    one entry per trial), as a table's rows."""
    out: list[dict[str, Any]] = []
    for m in doc.get("metrics", []):
        out.append(
            {
                "trial": int(m.get("trial", len(out) + 1)),
                "status": m.get("episode_status", ""),
                "progress": float(m.get("completion_percentage", 0)),
                "lap_time": round(int(m.get("elapsed_time_in_milliseconds", 0)) / 1000, 3),
                "off_track": int(m.get("off_track_count", 0)),
                "crashes": int(m.get("crash_count", 0)),
                "resets": int(m.get("reset_count", 0)),
            }
        )
    return out


def summary(table: list[dict[str, Any]]) -> dict[str, Any]:
    laps = [r for r in table if r["status"] == "Lap complete" or r["progress"] >= 100]
    return {
        "trials": len(table),
        "laps_completed": len(laps),
        "best_lap_time": min((r["lap_time"] for r in laps), default=None),
        "mean_progress": round(sum(r["progress"] for r in table) / len(table), 1) if table else 0,
    }


# -- I/O ------------------------------------------------------------------------------------
def start(
    inv: Inventory,
    env_dir: Path,
    options: Options,
    host: str | None,
    out: Path | None,
    tick: Tick,
    clone: bool = False,
) -> EvalStarted:
    """Uploads the eval params and puts the evaluation container on a host (replacing an
    evaluation already there); with `out`, writes what it would do there instead. clone:
    DRfC's `dr-start-evaluation -c`: the model's model/ and ip/ are copied to <prefix>-E
    first, and that copy is evaluated (training may write on under the prefix meanwhile)."""
    cfg = config.load(env_dir)
    checks.s3_keys(cfg)
    checks.storage(cfg)
    trained = cfg.setting("DR_LOCAL_S3_MODEL_PREFIX")
    if clone:
        cfg = cloned(cfg)
    now = time.time()
    body = params.dump(eval_params.params(cfg, now)).encode()
    name = eval_params.params_name(cfg)
    key = params.s3_key(cfg, name)
    state = runstate.load(env_dir)
    caps = capacity.of_hosts(inv, options)
    run = checks.run(cfg)
    staged = training.staged_dirs(cfg)  # mounted as into the workers (DRfC's eval does too)
    paths = {k: st.host_path for k, st in staged.items()}
    result = EvalStarted(
        run.id,
        key,
        eval_params.metrics_key(cfg, now),
        int(cfg.values.get("DR_EVAL_NUMBER_OF_TRIALS", "5")),
    )
    if out is not None:  # touches no host: the room left beside the run's own plan
        chosen, warnings = choose_host(caps, state.plan if state else None, host)
        creds = training.PLACEHOLDER_CREDS  # shown masked; a dry run makes no credentials
        spec = specs.evaluation(cfg, caps[chosen], creds, name, gazebo_cpus(0, 0), paths)
        doc = specs.masked(specs.stack(run.eval_stack, run.id, 0, [spec]))
        atomic_write(out / key, body, 0o644)
        atomic_write(out / "hosts" / chosen / "desired.json", json.dumps(doc, indent=2), 0o644)
        said = warnings + cfg.warnings + eval_params.warnings(cfg)
        result.host, result.warnings, result.dry_run = chosen, said, str(out)
        return result
    # the room every run on the fleet leaves (this one's training included)
    sessions = {h: session(inv.hosts[h], options) for h in caps}
    try:
        held = converge.statuses(sessions, list(caps), options.limit)
    finally:
        for s in sessions.values():
            s.close()
    left, _ = sharing.room(caps, held, run.eval_stack)
    chosen, warnings = choose_host(left, None, host)
    result.host, result.warnings = chosen, warnings + cfg.warnings + eval_params.warnings(cfg)
    bucket, prefix = cfg.setting("DR_LOCAL_S3_BUCKET"), cfg.setting("DR_LOCAL_S3_MODEL_PREFIX")
    with s3access.run_s3(inv, env_dir, options) as (s3, _):
        tick("checking the model")
        if storage.read(s3, bucket, f"{trained}/model/deepracer_checkpoints.json") is None:
            raise DrfleetError(
                f"no trained model at s3://{bucket}/{trained}/model/; nothing was started",
                where=cfg.where("DR_LOCAL_S3_MODEL_PREFIX"),
                fix="train first, or set DR_LOCAL_S3_MODEL_PREFIX to a trained model",
            )
        if clone:
            tick(f"cloning the model into s3://{bucket}/{prefix}")
            result.cloned = copy_model(s3, bucket, trained, prefix)
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    creds = storage.run_credentials(cfg, env_dir)  # after run_s3: the fleet minio's keys
    workers = (
        sum(1 for c in held[chosen].containers if c.role == "robomaker") if chosen in held else 0
    )
    spec = specs.evaluation(
        cfg, caps[chosen], creds, name, gazebo_cpus(workers, caps[chosen].vcpus), paths
    )
    intent = start_intent(run, chosen, spec, held.get(chosen), staged, cfg)
    tick(f"starting the evaluation on {chosen}")
    with execute.opened({chosen: inv.hosts[chosen]}, options) as sessions:
        done = execute.execute(intent, env_dir, sessions, 1)
    done.raise_first()
    result.generation = done.generation
    return result


def start_intent(
    run: Run,
    host: str,
    spec: dict[str, Any],
    held: agent_client.HostStatus | None,
    staged: dict[str, training.Staged],
    cfg: config.TrainingConfig,
) -> execute.Intent:
    """evaluate (pure): the run's evaluation stack on host, with the files it mounts staged
    and its container labelled with whose it is; checked against what host holds (held,
    when it was read)."""
    return execute.Intent(
        "evaluate",
        (
            execute.Stack(
                host,
                run.eval_stack,
                run.id,
                execute.typed(host, run.eval_stack, [spec]),
                wait=120,
                owned=True,
            ),
        ),
        preflight=execute.Preflight(held={host: held} if held is not None else None),
        staged=staged,
        owner=cfg,
    )


def stop_intent(run: Run, hosts: list[str]) -> execute.Intent:
    """evaluate --stop (pure): the evaluation stack ends on the hosts that hold it, whatever
    generation they hold; every other stack stays."""
    return execute.Intent(
        "stop the evaluation",
        tuple(execute.Stack(h, run.eval_stack, run.id, (), wait=60, force=True) for h in hosts),
    )


def cloned(cfg: config.TrainingConfig) -> config.TrainingConfig:
    """The config with DR_LOCAL_S3_MODEL_PREFIX=<prefix>-E, as start.sh -c exports it after
    activate.sh expanded the rest (so DR_LOCAL_S3_METRICS_PREFIX keeps the trained one's)."""
    run = dataclasses.replace(
        cfg.run,
        values={
            **cfg.run.values,
            "DR_LOCAL_S3_MODEL_PREFIX": cfg.setting("DR_LOCAL_S3_MODEL_PREFIX") + "-E",
        },
    )
    return dataclasses.replace(cfg, run=run)


INDEX_FILES = ("deepracer_checkpoints.json", ".coach_checkpoint")


def copy_model(s3: Any, bucket: str, src: str, dst: str, tries: int = 5) -> int:
    """start.sh -c's `aws s3 sync` of <src>/model and <src>/ip to <dst>: every object copied
    inside the bucket (nothing crosses to this machine). Training may go on meanwhile: the
    trainer uploads a checkpoint's files, then names it in its index files, and deletes all
    but its latest and best. So the index is read first, the checkpoints it names are copied
    first, the rest follows (a file the trainer deleted meanwhile is skipped), and the index
    as it was read goes last: the copy names only checkpoints it holds, one the simapp can
    load. Returns how many objects were copied."""
    for _ in range(tries):
        raw = storage.read(s3, bucket, f"{src}/model/deepracer_checkpoints.json")
        coach = storage.read(s3, bucket, f"{src}/model/.coach_checkpoint")
        if raw is None:
            raise DrfleetError(f"no trained model at s3://{bucket}/{src}/model/")
        index = json.loads(raw)
        names = {
            str(index[w]["name"])
            for w in ("last_checkpoint", "best_checkpoint")
            if (index.get(w) or {}).get("name")
        }
        last = str((index.get("last_checkpoint") or {}).get("name") or "")
        if coach is not None and last and last not in coach.decode("utf-8", "replace"):
            continue  # read between the trainer's two writes: read again

        listed = [
            o["Key"] for sub in ("model", "ip") for o in storage.every(s3, bucket, f"{src}/{sub}")
        ]
        listed = [k for k in listed if k.rsplit("/", 1)[-1] not in INDEX_FILES]
        listed.sort(key=lambda k: not _named(k, names))
        copied, whole = 0, True
        for key in listed:
            try:
                s3.copy_object(
                    Bucket=bucket,
                    Key=dst + key[len(src) :],
                    CopySource={"Bucket": bucket, "Key": key},
                )
                copied += 1
            except Exception as exc:
                if not storage.missing(exc):
                    raise
                if _named(key, names):  # a named checkpoint gone already: start over
                    whole = False
                    break
        if not whole:
            continue
        s3.put_object(Bucket=bucket, Key=f"{dst}/model/deepracer_checkpoints.json", Body=raw)
        if coach is not None:
            s3.put_object(Bucket=bucket, Key=f"{dst}/model/.coach_checkpoint", Body=coach)
        return copied + 1 + (coach is not None)
    raise DrfleetError(
        f"no consistent copy of s3://{bucket}/{src} could be made at {dst} in {tries} tries "
        "(training replaced its checkpoints faster than they were copied)",
        fix="try again, or evaluate without --clone",
    )


def _named(key: str, names: set[str]) -> bool:
    """Whether key is a file of one of the checkpoints names (<name>.index, ...)."""
    return any(key.rsplit("/", 1)[-1].startswith(f"{n}.") for n in names)


def stop(inv: Inventory, env_dir: Path, options: Options) -> list[str]:
    """Ends the run's evaluation (its stack, deepracer-eval-<DR_RUN_ID>) wherever it runs;
    every other stack stays. Returns the hosts it was removed from."""
    hosts = {h.name: h for h in inv.hosts.values() if h.roles}
    run = training.run_of(env_dir)
    with execute.opened(hosts, options) as sessions:
        asked = fan_out(list(hosts.values()), lambda h: agent_client.status(sessions[h.name]))
        holding = [o.host.name for o in asked if o.value and run.eval_stack in o.value.agent.stacks]
        done = execute.execute(stop_intent(run, holding), env_dir, sessions, options.limit)
    failed = [(o.host.name, o.error) for o in asked if o.error]
    failed += [(h, o.error) for h, o in done.outcomes.items() if o.error]
    if failed:
        raise DrfleetError("\n".join(f"{h}: {e.message}" for h, e in failed if e))
    return sorted(done.outcomes)


def results(
    inv: Inventory,
    env_dir: Path,
    options: Options,
    key: str | None,
    wait_for: int,
    timeout: float,
    tick: Tick,
    host: str | None = None,
) -> EvalResults:
    """The evaluation's metrics at `key` (default: the newest under the metrics prefix), as
    rows and a summary; waits until it holds `wait_for` trials (0: as it is now). host: where
    the evaluation runs; an evaluation that ends there before its trials are in is said at
    once, with its exit status (it is never restarted), rather than waited for."""
    with s3access.run_s3(inv, env_dir, options) as (s3, cfg):
        bucket = cfg.setting("DR_LOCAL_S3_BUCKET")
        if key is None:
            key = newest(s3, bucket, cfg)
        deadline = time.monotonic() + timeout
        ended: agent_client.ContainerStatus | None = None
        polls = 0
        while True:
            raw = storage.read(s3, bucket, key)
            table = rows(json.loads(raw)) if raw else []
            if len(table) >= wait_for:
                break
            if ended is not None:  # read once more after it ended: its last trial may land late
                raise DrfleetError(
                    f"the evaluation on {host} ended (exit status {ended.last_exit_code}) "
                    f"with {len(table)} of {wait_for} trials in s3://{bucket}/{key}",
                    fix="`drfleet logs --evaluation` shows why",
                )
            polls += 1
            if host is not None and polls % 5 == 0:
                ended = _ended(inv, options, host, env_dir)
            tick(f"trial {len(table)} of {wait_for}")
            if time.monotonic() > deadline:
                raise DrfleetError(
                    f"s3://{bucket}/{key} holds {len(table)} of {wait_for} trials after "
                    f"{timeout:g} s",
                    fix="`drfleet logs --evaluation` shows what the evaluation does",
                )
            time.sleep(2)
    return EvalResults(key, table, summary(table))


def _ended(
    inv: Inventory, options: Options, host: str, env_dir: Path
) -> agent_client.ContainerStatus | None:
    """The evaluation container, if it has ended on host (done or failed)."""
    try:
        with session(inv.hosts[host], options) as s:
            c = agent_client.status(s).get(training.run_of(env_dir).evaluation)
    except DrfleetError:  # a host that does not answer now: the trials may still come
        return None
    ended = (agent_client.State.COMPLETED, agent_client.State.EXITED)
    return c if c is not None and c.state in ended else None


def newest(s3: Any, bucket: str, cfg: config.TrainingConfig) -> str:
    prefix = cfg.values.get("DR_LOCAL_S3_METRICS_PREFIX")
    where = f"{prefix}/evaluation" if prefix is not None else "DeepRacer-Metrics"
    found = [o["Key"] for o in storage.every(s3, bucket, where)]
    found = [k for k in found if "valuation" in k.rsplit("/", 1)[-1]]
    if not found:
        raise DrfleetError(
            f"no evaluation metrics under s3://{bucket}/{where}/",
            fix="run `drfleet evaluate` first",
        )
    return str(max(found))

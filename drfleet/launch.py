"""train, status, logs, stop: the effects. The decisions were made in training.prepare()."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from drfleet import plan as plan_mod
from drfleet import runstate, specs, training
from drfleet.errors import DrfleetError
from drfleet.inventory import Host, Inventory
from drfleet.playbook.modules.agent import PYZ
from drfleet.remote import Options, Outcome, Session, fan_out, session
from drfleet.shell import Command, Raw, cmd, sh
from drfleet.tunnel import forward
from drfleet.ui import Board

STATE_DIR = "/var/lib/drfleet"


def agent_cmd(*args: str) -> Any:
    return cmd("python3", PYZ, *args, "--state-dir", STATE_DIR)


def apply(sess: Session, doc: dict[str, Any], wait: float) -> dict[str, Any]:
    res = sess.run(
        agent_cmd("apply", "--wait", str(wait)),
        stdin=json.dumps(doc),
        become=True,
        check=False,
        timeout=wait + 60,
        task="apply desired state",
    )
    if res.exit_code == 2:
        raise DrfleetError(
            f"the agent refused the desired state: {res.tail()}", where=sess.host.name
        )
    try:
        status: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise DrfleetError(
            f"no answer from the agent: {res.tail()}",
            where=sess.host.name,
            fix="is it provisioned? run `invoke provision`",
        ) from None
    if res.exit_code != 0:
        bad = [
            f"{c['name']}: {c['state']} {c.get('last_error', '')}".strip()
            for c in status.get("containers", [])
            if c.get("state") != "running"
        ]
        raise DrfleetError(
            f"not everything runs after {wait:g} s: " + "; ".join(bad), where=sess.host.name
        )
    return status


def s3_client(endpoint: str | None, creds: dict[str, str], region: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=creds["access_key"],
        aws_secret_access_key=creds["secret_key"],
        config=Config(
            retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=30
        ),
    )


def upload(s3: Any, p: training.Prepared, wipe: bool, live: bool = False) -> list[str]:
    """Puts the run's files in S3. The model prefix must hold nothing but what this run puts
    there (a run killed before its trainer started), unless --wipe. A run whose trainer is
    still live with exactly these files is the same run: nothing is uploaded and train goes
    on to converge the hosts (a re-run after the controller died)."""
    cfg = p.cfg
    bucket = cfg.get("DR_LOCAL_S3_BUCKET", "bucket")
    prefix = cfg.get("DR_LOCAL_S3_MODEL_PREFIX", "rl-deepracer-sagemaker")
    want = training.objects(p)
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:
        s3.create_bucket(Bucket=bucket)
    existing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])
    if existing and not wipe and not {o["Key"] for o in existing} <= set(want):
        differ = [k for k, body in want.items() if _get(s3, bucket, k) != body]
        if live and not differ:
            return []
        if live:
            raise DrfleetError(
                f"a run is in progress in s3://{bucket}/{prefix}/ and these files differ from "
                f"what it started with: {', '.join(differ)}; nothing was changed",
                fix="`invoke stop` first, then train with --wipe or another "
                "DR_LOCAL_S3_MODEL_PREFIX",
            )
        raise DrfleetError(
            f"s3://{bucket}/{prefix}/ already holds {len(existing)} objects of "
            "an earlier run; nothing was started",
            fix="use another DR_LOCAL_S3_MODEL_PREFIX, or --wipe to delete them",
        )
    if wipe:
        while existing:
            s3.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": o["Key"]} for o in existing]}
            )
            existing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])
    for key, body in want.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    return list(want)


def _get(s3: Any, bucket: str, key: str) -> bytes | None:
    try:
        body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body
    except Exception:
        return None


def train(
    inv: Inventory, env_dir: Path, options: Options, workers: int, wipe: bool, board: Board | None
) -> dict[str, Any]:
    p = training.prepare(env_dir, inv, options, workers)
    creds = training.credentials(env_dir)
    generation = int(time.time() * 1000)
    docs = training.desired(p, creds, generation + 1)
    hosts = [inv.hosts[h] for h in docs]
    trainer = inv.hosts[p.plan.trainer]
    local = p.cfg.storage == "local"
    sessions = {h.name: session(h, options) for h in hosts}
    try:
        preflight(sessions, docs, options.limit)
        with sessions[trainer.name] as tsess:
            live = not wipe and _runs(tsess, "drfleet-rlcoach")
            if board:
                board.update(trainer.name, "starting minio" if local else "uploading")
            if local:
                if not live:  # a live run's trainer keeps its rl_coach: no minio-only state
                    minio_only = {
                        **docs[trainer.name],
                        "generation": generation,
                        "containers": [
                            c for c in docs[trainer.name]["containers"] if c["role"] == "minio"
                        ],
                    }
                    apply(tsess, minio_only, 60)
                with forward(tsess, "127.0.0.1", 9000) as port:
                    s3 = s3_client(
                        f"http://127.0.0.1:{port}",
                        creds,
                        p.cfg.get("DR_AWS_APP_REGION", "us-east-1"),
                    )
                    _wait_s3(s3)
                    uploaded = upload(s3, p, wipe, live)
            else:
                uploaded = upload(
                    s3_client(None, creds, p.cfg.get("DR_AWS_APP_REGION", "us-east-1")),
                    p,
                    wipe,
                    live,
                )
            with runstate.locked(env_dir):  # before any worker is told: a kill leaves a record
                previous = runstate.load(env_dir)
                runstate.save(
                    env_dir,
                    runstate.RunState(
                        p.cfg.get("DR_RUN_ID", "0"),
                        p.cfg.get("DR_LOCAL_S3_BUCKET", "bucket"),
                        p.cfg.get("DR_LOCAL_S3_MODEL_PREFIX", "rl-deepracer-sagemaker"),
                        generation + 1,
                        p.plan,
                        {
                            h: g
                            for h, g in (previous.fence if previous else {}).items()
                            if h not in docs
                        },
                    ),
                )

            if local and len(hosts) > 1:
                reach_check(p, sessions, trainer.name, board)

            def push(host: Host) -> dict[str, Any]:
                if board:
                    board.update(
                        host.name, f"starting {len(docs[host.name]['containers'])} containers"
                    )
                stage(sessions[host.name], p, docs[host.name])
                status = apply(sessions[host.name], docs[host.name], 180)
                if board:
                    board.done(host.name, "running")
                return status

            outcomes = fan_out(hosts, push, limit=options.limit)
    finally:
        for s in sessions.values():
            s.close()
    return {
        "plan": p.plan.as_json(),
        "uploaded": uploaded,
        "resumed": live and not uploaded,
        "generation": generation + 1,
        "hosts": {o.host.name: _host_result(o) for o in outcomes},
    }


def stage(sess: Session, p: training.Prepared, doc: dict[str, Any]) -> None:
    """Copies DR_ROBOMAKER_MOUNT_SIMAPP_DIR / _SCRIPTS_DIR to a host that runs workers, once
    per content: the directory is named by its digest and appears whole (rename) or not."""
    if not any(c["role"] == "robomaker" for c in doc["containers"]):
        return
    for st in p.staged.values():
        final, tmp = st.host_path, f"{st.host_path}.partial"
        install = sh(
            Command(
                (
                    Raw("test -d"),
                    final,
                    Raw("|| { rm -rf"),
                    tmp,
                    Raw("&& mkdir -p"),
                    tmp,
                    Raw("&& tar -x -f - -C"),
                    tmp,
                    Raw("--no-same-owner && mv"),
                    tmp,
                    final,
                    Raw("; }"),
                )
            )
        )
        sess.run(install, stdin=st.tar, become=True, timeout=600, task=f"copy {st.key}")


def preflight(sessions: dict[str, Session], docs: dict[str, dict[str, Any]], limit: int) -> None:
    """Before anything starts: every host that will run workers has what provision installs
    for them (the taskset shim; a host provisioned by an older drfleet lacks it)."""
    hosts = [
        sessions[h].host
        for h, d in docs.items()
        if any(c["role"] == "robomaker" for c in d["containers"])
    ]

    def one(host: Host) -> bool:
        res = sessions[host.name].run(
            cmd("test", "-x", specs.TASKSET_SHIM), check=False, timeout=30, task="taskset shim"
        )
        return res.exit_code == 0

    lacking = sorted(o.host.name for o in fan_out(hosts, one, limit=limit) if not o.value)
    if lacking:
        raise DrfleetError(
            f"{', '.join(lacking)} {'lacks' if len(lacking) == 1 else 'lack'} "
            f"{specs.TASKSET_SHIM}, which pins each worker's Gazebo to CPUs of its own host "
            "(provisioned by an older drfleet); nothing was started",
            fix=f"run `invoke provision --host {','.join(lacking)}`, then train again",
        )


def _runs(sess: Session, name: str) -> bool:
    """Whether the host has this container, in any state: a run is live there. Asked of
    docker, not the agent's status, which lags while a pass creates containers."""
    res = sess.run(
        cmd("docker", "ps", "-aq", "--filter", f"name=^{name}$"),
        become=True,
        check=False,
        timeout=30,
        task="is the trainer running",
    )
    return res.exit_code == 0 and bool(res.stdout.strip())


PORTS = "2377/tcp, 7946/tcp and udp, 4789/udp (the swarm overlay) and 9000/tcp (minio)"
PROBE = (
    "import sys, urllib.request, urllib.error\n"
    "try:\n"
    "    urllib.request.urlopen('http://minio:9000/minio/health/live', timeout=8)\n"
    "except urllib.error.HTTPError:\n"
    "    pass\n"
    "except Exception as exc:\n"
    "    sys.exit(str(exc))\n"
)


def reach_check(
    p: training.Prepared, sessions: dict[str, Session], trainer: str, board: Board | None
) -> None:
    """Every worker host must reach minio on the trainer over sagemaker-local before its
    workers start; otherwise they would wait 20 minutes for the trainer and fail."""
    from drfleet.specs import NETWORK, simapp_image

    workers = sorted({w.host for w in p.plan.workers} - {trainer})

    def one(host: Host) -> None:
        if board:
            board.update(host.name, "checking the way to the trainer")
        image = simapp_image(p.cfg, p.caps[host.name].gpus > 0)
        res = sessions[host.name].run(
            cmd(
                "docker",
                "run",
                "--rm",
                "--network",
                NETWORK,
                "--entrypoint",
                "python3",
                image,
                "-c",
                PROBE,
            ),
            become=True,
            check=False,
            timeout=90,
            task="reach the trainer",
        )
        if res.exit_code != 0:
            raise DrfleetError(
                f"cannot reach minio on the trainer {trainer} over the {NETWORK} overlay: "
                f"{res.tail(2)}",
                where=host.name,
                fix=f"open between {host.name} and {trainer}: {PORTS}; then run train again",
            )

    failed = [o for o in fan_out([sessions[h].host for h in workers], one) if o.error]
    if failed:
        raise DrfleetError(
            "\n".join(o.error.message for o in failed if o.error)
            + "\nnothing was started on the worker hosts"
        )


def _wait_s3(s3: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            s3.list_buckets()
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise DrfleetError(f"S3 (minio) does not answer on the trainer: {exc}") from None
            time.sleep(0.5)


def _host_result(o: Outcome[dict[str, Any]]) -> dict[str, Any]:
    if o.error:
        return {"ok": False, "unreachable": o.unreachable, "error": o.error.message}
    containers = (o.value or {}).get("containers", [])
    return {"ok": True, "containers": {c["name"]: c["state"] for c in containers}}


STATUS_CONNECT_TIMEOUT = 4.0  # with one retry, a host that does not answer shows in ~9 s


def status(
    inv: Inventory, options: Options, env_dir: Path | None = None, quick: bool = True
) -> dict[str, Any]:
    """Every host's agent status. With the run record of env_dir: the run's slots, which of
    them are lost with an unreachable host, and hosts whose slots moved while they were away
    are told to drop their workers now (the controller's latest assignment wins). Quick:
    a short connect timeout and one retry, so a dead host shows within seconds; --rebalance
    asks with the inventory's own timeouts before it moves anything."""
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
    hosts = [inv.hosts[n] for n in inv.hosts if n in names]

    def one(host: Host) -> dict[str, Any]:
        with session(host, options) as s:
            doc = _agent_status(s)
            if state and host.name in state.fence:
                before = [c["name"] for c in doc.get("containers", [])]
                doc = {**doc, **fence(s, state, host.name), "dropped": before}
        return doc

    out: dict[str, Any] = {}
    for o in fan_out(hosts, one, limit=options.limit):
        if o.error:
            out[o.host.name] = {"reachable": not o.unreachable, "error": o.error.message}
        else:
            out[o.host.name] = {"reachable": True, **(o.value or {})}
    doc: dict[str, Any] = {"hosts": out}
    if state and env_dir:
        runstate.fenced(
            env_dir, {h: g for h, g in state.fence.items() if "dropped" in out.get(h, {})}
        )
        doc["run"] = run_summary(state, out)
    return doc


def fence(sess: Session, state: runstate.RunState, host: str) -> dict[str, Any]:
    """Tells a host whose slots moved away to run nothing of this run."""
    return apply(
        sess,
        {
            "fleet": "drfleet",
            "run_id": state.run_id,
            "generation": state.fence[host],
            "containers": [],
        },
        60,
    )


def run_summary(state: runstate.RunState, hosts: dict[str, Any]) -> dict[str, Any]:
    """Slots as planned, each with its state; the slots of unreachable hosts are lost (pure)."""
    down = {h for h, st in hosts.items() if not st.get("reachable", False)}
    slots = {}
    for w in state.plan.workers:
        name = f"drfleet-robomaker-{w.slot}"
        here = {c["name"]: c for c in hosts.get(w.host, {}).get("containers", [])}
        slots[str(w.slot)] = {
            "host": w.host,
            "world": w.world,
            "state": "lost" if w.host in down else here.get(name, {}).get("state", "missing"),
        }
    return {
        "run_id": state.run_id,
        "generation": state.generation,
        "trainer": {
            "host": state.plan.trainer,
            "state": "lost" if state.plan.trainer in down else "ok",
        },
        "slots": slots,
        "lost": plan_mod.lost(state.plan, down),
        "dropped": {h: st["dropped"] for h, st in hosts.items() if st.get("dropped")},
        "fence_pending": sorted(
            set(state.fence) - {h for h, st in hosts.items() if "dropped" in st}
        ),
    }


def _agent_status(sess: Session) -> dict[str, Any]:
    res = sess.run(agent_cmd("status", "--json"), become=True, timeout=30, task="agent status")
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


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
            fix="run `invoke train` (with the same --env-dir) first",
        )
    st = status(inv, options, env_dir, quick=False)  # sure it is down before moving
    down = {h for h, v in st["hosts"].items() if not v.get("reachable", False)}
    with runstate.locked(env_dir):
        state = runstate.load(env_dir) or state  # status may have told hosts meanwhile
        p = training.prepare_from(env_dir, inv, options, state.plan, skip=down)
        new_plan, moved = plan_mod.rebalance(state.plan, list(p.caps.values()), down)
        generation = int(time.time() * 1000)
        p = dataclasses.replace(p, plan=new_plan)
        docs = training.desired(p, training.credentials(env_dir), generation)
        checks = {h: session(inv.hosts[h], options) for h in docs if h not in down}
        try:
            preflight(checks, {h: docs[h] for h in checks}, options.limit)
        finally:
            for s in checks.values():
                s.close()
        fenced = {h: generation for h in down if h in {w.host for w in state.plan.workers}}
        was = {str(w.slot): w.host for w in state.plan.workers}
        state = runstate.RunState(
            state.run_id,
            state.bucket,
            state.prefix,
            generation,
            new_plan,
            {**state.fence, **fenced},
        )
        runstate.save(env_dir, state)  # before any host is told: the record is what we intend
    targets = [inv.hosts[h] for h in docs if h not in down]

    def push(host: Host) -> dict[str, Any]:
        if board:
            board.update(host.name, f"converging {len(docs[host.name]['containers'])} containers")
        with session(host, options) as s:
            stage(s, p, docs[host.name])
            result = apply(s, docs[host.name], 180)
        if board:
            board.done(host.name, "running")
        return result

    outcomes = fan_out(targets, push, limit=options.limit)
    return {
        "moved": {str(k): {"from": was[str(k)], "to": h} for k, h in moved.items()},
        "down": sorted(down),
        "plan": new_plan.as_json(),
        "generation": generation,
        "hosts": {o.host.name: _host_result(o) for o in outcomes},
    }


def find(inv: Inventory, options: Options, name: str) -> Host:
    return locate(inv, options, name)[0]


def locate(inv: Inventory, options: Options, name: str) -> tuple[Host, dict[str, Any]]:
    """The host that runs container `name`, and the container as its agent reports it."""
    doc = status(inv, options)
    for host, st in doc["hosts"].items():
        for c in st.get("containers", []):
            if c["name"] == name:
                return inv.hosts[host], c
    raise DrfleetError(f"no host runs {name}", fix="see `invoke status`")


def stop(inv: Inventory, options: Options, env_dir: Path | None = None) -> dict[str, Any]:
    """Empty desired state everywhere; on the trainer also the sagemaker container rl_coach
    started (algo-*), which no agent owns. Data in minio's directory stays. The run record
    goes, except that hosts which could not be told are remembered and told when next seen."""
    hosts = [h for h in inv.hosts.values() if h.roles]
    generation = int(time.time() * 1000)

    def one(host: Host) -> dict[str, Any]:
        with session(host, options) as s:
            st = apply(
                s,
                {"fleet": "drfleet", "run_id": "", "generation": generation, "containers": []},
                60,
            )
            if "trainer" in host.roles:
                s.run(
                    cmd("docker", "ps", "-aq", "--filter", "name=^algo-[0-9]+-").then(
                        cmd("xargs", "-r", "docker", "rm", "-f"), Raw("|")
                    ),
                    become=True,
                    timeout=120,
                    task="remove the sagemaker container",
                )
        return st

    outcomes = fan_out(hosts, one, limit=options.limit)
    if env_dir:
        with runstate.locked(env_dir):
            state = runstate.load(env_dir)
            missed = {o.host.name: generation for o in outcomes if not o.ok}
            if state and missed:
                state.plan = plan_mod.Plan(state.plan.trainer, [])
                state.run_id, state.generation, state.fence = "", generation, missed
                runstate.save(env_dir, state)
            elif state:
                runstate.clear(env_dir)
    return {
        "hosts": {
            o.host.name: (
                {"ok": True} if o.ok else {"ok": False, "error": o.error.message if o.error else ""}
            )
            for o in outcomes
        }
    }

"""train, status, logs, stop: the effects. The decisions were made in training.prepare()."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from drfleet import training
from drfleet.drfc import params
from drfleet.errors import DrfleetError
from drfleet.inventory import Host, Inventory
from drfleet.playbook.modules.agent import PYZ
from drfleet.remote import Options, Outcome, Session, fan_out, session
from drfleet.shell import Raw, cmd
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


def upload(s3: Any, p: training.Prepared, wipe: bool) -> list[str]:
    cfg = p.cfg
    bucket = cfg.get("DR_LOCAL_S3_BUCKET", "bucket")
    prefix = cfg.get("DR_LOCAL_S3_MODEL_PREFIX", "rl-deepracer-sagemaker")
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:
        s3.create_bucket(Bucket=bucket)
    existing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])
    if existing and not wipe:
        raise DrfleetError(
            f"s3://{bucket}/{prefix}/ already holds {len(existing)} objects of "
            "an earlier run; nothing was started",
            fix="use another DR_LOCAL_S3_MODEL_PREFIX, or --wipe to delete them",
        )
    while existing:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": o["Key"]} for o in existing]})
        existing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])
    keys = []
    custom_prefix = cfg.get("DR_LOCAL_S3_CUSTOM_FILES_PREFIX", "custom_files")
    for f in sorted(cfg.custom_dir.iterdir()):
        if f.is_file():
            s3.put_object(Bucket=bucket, Key=f"{custom_prefix}/{f.name}", Body=f.read_bytes())
            keys.append(f"{custom_prefix}/{f.name}")
    for name, doc in p.params.items():
        key = params.s3_key(cfg, name)
        s3.put_object(Bucket=bucket, Key=key, Body=params.dump(doc).encode())
        keys.append(key)
    key = params.s3_key(cfg, "reward_function.py")
    s3.put_object(Bucket=bucket, Key=key, Body=cfg.reward_function.encode())
    keys.append(key)
    return keys


def train(
    inv: Inventory, env_dir: Path, options: Options, workers: int, wipe: bool, board: Board | None
) -> dict[str, Any]:
    p = training.prepare(env_dir, inv, options, workers)
    creds = training.credentials(env_dir)
    generation = int(time.time() * 1000)
    docs = training.desired(p, creds, generation + 1)
    hosts = [inv.hosts[h] for h in docs]
    trainer = inv.hosts[p.plan.trainer]
    local = p.cfg.get("DR_CLOUD", "local").lower() == "local"
    sessions = {h.name: session(h, options) for h in hosts}
    try:
        with sessions[trainer.name] as tsess:
            if board:
                board.update(trainer.name, "starting minio" if local else "uploading")
            if local:
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
                    uploaded = upload(s3, p, wipe)
            else:
                uploaded = upload(
                    s3_client(None, creds, p.cfg.get("DR_AWS_APP_REGION", "us-east-1")), p, wipe
                )

            if local and len(hosts) > 1:
                reach_check(p, sessions, trainer.name, board)

            def push(host: Host) -> dict[str, Any]:
                if board:
                    board.update(
                        host.name, f"starting {len(docs[host.name]['containers'])} containers"
                    )
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
        "generation": generation + 1,
        "hosts": {o.host.name: _host_result(o) for o in outcomes},
    }


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


def status(inv: Inventory, options: Options) -> dict[str, Any]:
    hosts = [h for h in inv.hosts.values() if h.roles]

    def one(host: Host) -> dict[str, Any]:
        with session(host, options) as s:
            res = s.run(agent_cmd("status", "--json"), become=True, timeout=30, task="agent status")
        doc: dict[str, Any] = json.loads(res.stdout)
        return doc

    out: dict[str, Any] = {}
    for o in fan_out(hosts, one, limit=options.limit):
        if o.error:
            out[o.host.name] = {"reachable": not o.unreachable, "error": o.error.message}
        else:
            out[o.host.name] = {"reachable": True, **(o.value or {})}
    return {"hosts": out}


def find(inv: Inventory, options: Options, name: str) -> Host:
    doc = status(inv, options)
    for host, st in doc["hosts"].items():
        if any(c["name"] == name for c in st.get("containers", [])):
            return inv.hosts[host]
    raise DrfleetError(f"no host runs {name}", fix="see `invoke status`")


def stop(inv: Inventory, options: Options) -> dict[str, Any]:
    """Empty desired state everywhere; on the trainer also the sagemaker container rl_coach
    started (algo-*), which no agent owns. Data in minio's directory stays."""
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

    return {
        "hosts": {
            o.host.name: (
                {"ok": True} if o.ok else {"ok": False, "error": o.error.message if o.error else ""}
            )
            for o in fan_out(hosts, one, limit=options.limit)
        }
    }

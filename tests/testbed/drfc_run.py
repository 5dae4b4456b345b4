"""Helpers for the training tests: DRfC files for the stand-in simapp, a provisioned fleet,
and what a user would look at (S3 objects, iterations, the containers on every host)."""

from __future__ import annotations

import contextlib
import json
import re
import time
from pathlib import Path
from typing import Any

import boto3

from drfleet.hosts import inventory
from drfleet.hosts.remote import Options, session
from drfleet.hosts.tunnel import forward
from tests.conftest import invoke, provision_args
from tests.testbed import TestBed

PREFIX = "rl-deepracer-sagemaker"
NONSTOP = {"standin_iterations": 100000, "standin_train_seconds": 0.5}  # trains until stopped


def write_drfc(
    d: Path,
    workers: int,
    worlds: dict[int, str],
    episodes: int,
    hyper: dict[str, Any] | None = None,
) -> Path:
    """DRfC files for the stand-in simapp; hyper adds hyperparameters (the stand-in reads
    standin_iterations and standin_train_seconds)."""
    d.mkdir(parents=True, exist_ok=True)
    assert invoke("init", "--env-dir", str(d)).code == 0
    system = (d / "system.env").read_text()
    for a, b in [
        (
            "DR_SIMAPP_SOURCE=awsdeepracercommunity/deepracer-simapp",
            "DR_SIMAPP_SOURCE=drfleet-standin/simapp",
        ),
        ("DR_SIMAPP_VERSION=6.0.4-cpu", "DR_SIMAPP_VERSION=1.0-cpu"),
        ("DR_MINIO_IMAGE=latest", "DR_MINIO_IMAGE=drfleet-standin/minio:1"),
        ("DR_WORKERS=1", f"DR_WORKERS={workers}"),
    ]:
        system = system.replace(a, b)
    (d / "system.env").write_text(system)
    run = (
        (d / "run.env")
        .read_text()
        .replace("DR_TRAIN_MULTI_CONFIG=False", f"DR_TRAIN_MULTI_CONFIG={workers > 1}")
        .replace("DR_WORLD_NAME=reinvent_base", "DR_WORLD_NAME=reInvent2019_track")
    )
    (d / "run.env").write_text(run)
    for k, world in worlds.items():
        (d / f"worker-{k}.env").write_text(f"# worker {k}\n\nDR_WORLD_NAME={world}\n")
    hp = d / "custom_files" / "hyperparameters.json"
    hp.write_text(
        json.dumps(
            {
                **json.loads(hp.read_text()),
                "num_episodes_between_training": episodes,
                **(hyper or {}),
            }
        )
    )
    return d


def provisioned(
    bed: TestBed, env_dir: Path, host_vars: dict[str, dict[str, Any]] | None = None
) -> None:
    bed.write_inventory(host_vars=host_vars, worker_vcpus=1, trainer_vcpus=1)  # 2-vCPU hosts
    run = invoke(*provision_args(bed, env_dir), timeout=900)  # as a person runs it: no --json
    assert run.code == 0, run.stdout[-3000:] + run.stderr
    bed.provision_log = run.stderr  # type: ignore[attr-defined]


def s3(bed: TestBed) -> Any:
    """The run's minio on h1, as the controller reaches it: through SSH to the host's
    127.0.0.1:9000 (it listens nowhere else), with the keys minio runs with (each env dir
    generates its own). One tunnel per bed, closed with it."""
    endpoint = getattr(bed, "s3_endpoint", None)
    if endpoint is None:
        stack = contextlib.ExitStack()
        sess = stack.enter_context(session(inventory.load(bed.inventory).hosts["h1"], Options()))
        port = stack.enter_context(forward(sess, "127.0.0.1", 9000))
        bed.on_close(stack.close)
        endpoint = bed.s3_endpoint = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    env = json.loads(bed.exec("h1", "docker inspect --format '{{json .Config.Env}}' drfleet-minio"))
    keys = dict(e.split("=", 1) for e in env)  # minio refuses other keys, as the real one does
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=keys["MINIO_ROOT_USER"],
        aws_secret_access_key=keys["MINIO_ROOT_PASSWORD"],
    )


def iterations(
    bed: TestBed, count: int, timeout: float = 120, start: int = 0, prefix: str = PREFIX
) -> list[list[dict[str, Any]]]:
    """The episodes of iterations start .. start+count-1, waiting for them to be trained."""
    client = s3(bed)
    deadline = time.monotonic() + timeout
    out: list[list[dict[str, Any]]] = []
    while len(out) < count:
        try:
            body = client.get_object(
                Bucket="bucket", Key=f"{prefix}/standin/iteration-{start + len(out)}.json"
            )["Body"]
            out.append(json.loads(body.read()))
        except client.exceptions.NoSuchKey:
            assert time.monotonic() < deadline, f"only {len(out)} iterations after {timeout} s"
            time.sleep(1)
    return out


def up(bed: TestBed) -> list[str]:
    """The hosts whose machine runs (a stopped one has no containers to look at)."""
    return [
        n
        for n, h in bed.hosts.items()
        if bed.client.api.inspect_container(h.container)["State"]["Running"]
    ]


# the name SageMaker's local mode gives the trainer (sagemaker 2.x local/image.py)
SAGEMAKER = re.compile(r"^[a-z0-9]{10}-algo-1-[a-z0-9]{5}$")


def containers(bed: TestBed) -> dict[str, list[str]]:
    return {name: bed.exec(name, "docker ps -a --format '{{.Names}}'").split() for name in up(bed)}


def container_ids(bed: TestBed) -> dict[str, str]:
    """container name -> id, over the running hosts: a restart or a duplicate changes it."""
    out = {}
    for name in up(bed):
        for line in bed.exec(name, "docker ps -a --format '{{.Names}} {{.ID}}'").splitlines():
            cname, cid = line.split()
            assert cname not in out, f"{cname} runs on two hosts"
            out[cname] = cid
    return out


def trained(bed: TestBed, prefix: str = PREFIX) -> int:
    """How many iterations the trainer of the model prefix has finished so far."""
    pages = s3(bed).get_paginator("list_objects_v2")
    return sum(
        1
        for page in pages.paginate(Bucket="bucket", Prefix=f"{prefix}/standin/iteration-")
        for _ in page.get("Contents", [])
    )

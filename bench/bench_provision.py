"""Provisioning speed on the test bed, recorded in bench/RESULTS.md.

1. No-op re-run of provision.yml on 1, 3 and 5 provisioned hosts (goal: 5 hosts <= 1.5 s wall,
   and 5 hosts no more than 30% slower than 1).
2. Cold provision of one fresh host, split into apt (download + install) and the rest.
3. A 1 GB image streamed from the controller to 3 hosts (--images-from controller).

Run: python -m bench.bench_provision [--rounds N] [--skip-image]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import docker

from bench.results import publish
from tests.testbed import TestBed, ensure_docker_host_image
from tests.testbed.images import ensure_busybox

REPO = Path(__file__).resolve().parent.parent
SIMAPP, MINIO = "drfleet-test/simapp:1.0-cpu", "drfleet-test/minio:test"
BIG = "drfleet-bench/big:1g"


def provision(inventory: Path, env_dir: Path, *extra: str) -> tuple[float, dict[str, Any]]:
    t = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "invoke",
            "provision",
            "--inventory",
            str(inventory),
            "--env-dir",
            str(env_dir),
            "--images-from",
            "controller",
            "--json",
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - t
    doc = json.loads(out.stdout)
    bad = {h: r for h, r in doc["hosts"].items() if r["failed"] or r["unreachable"]}
    if bad:
        raise SystemExit(f"provision failed: {json.dumps(bad, indent=1)[:3000]}")
    return elapsed, doc


def env(tmp: Path) -> Path:
    busybox = docker.from_env().images.get(ensure_busybox())
    for tag in (SIMAPP, MINIO):
        busybox.tag(tag)
    d = tmp / "drfc"
    d.mkdir()
    (d / "system.env").write_text(
        "DR_CLOUD=local\nDR_SIMAPP_SOURCE=drfleet-test/simapp\n"
        f"DR_SIMAPP_VERSION=1.0-cpu\nDR_MINIO_IMAGE={MINIO}\n"
    )
    return d


def big_image() -> int:
    client = docker.from_env()
    try:
        return int(client.images.get(BIG).attrs["Size"])
    except docker.errors.ImageNotFound:
        pass
    with tempfile.TemporaryDirectory() as ctx:
        with open(Path(ctx) / "blob", "wb") as fh:
            for _ in range(1024):
                fh.write(os.urandom(1 << 20))
        (Path(ctx) / "Dockerfile").write_text(f"FROM {ensure_busybox()}\nCOPY blob /blob\n")
        client.images.build(path=ctx, tag=BIG, rm=True)
    return int(client.images.get(BIG).attrs["Size"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--skip-image", action="store_true")
    args = ap.parse_args()
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        env_dir = env(tmp)
        # 2. cold, one fresh host
        with TestBed(1, tmp / "cold") as bed:
            cold, doc = provision(bed.inventory, env_dir)
        tasks = doc["hosts"]["h1"]["tasks"]
        apt = sum(
            t.get("elapsed_s", 0)
            for t in tasks
            if t["name"] in ("Base packages", "Docker engine (Debian's docker.io)")
        )
        image = sum(t.get("elapsed_s", 0) for t in tasks if t["name"] == "Simulation images")
        # 1. no-op re-runs on 5 provisioned hosts, selecting 1, 3 or 5 of them
        with TestBed(5, tmp / "five") as bed:
            first, _ = provision(bed.inventory, env_dir)
            noop: dict[int, list[float]] = {}
            for n in (1, 3, 5):
                names = ",".join(f"h{i}" for i in range(1, n + 1))
                runs = []
                for _ in range(args.rounds):
                    elapsed, doc = provision(bed.inventory, env_dir, "--host", names)
                    assert all(r["changed"] == 0 for r in doc["hosts"].values()), doc
                    runs.append(elapsed)
                noop[n] = runs
        lines += [
            f"No-op re-run of playbooks/provision.yml (median of {args.rounds}; whole command, "
            "process start included; hosts already provisioned, so nothing changes):",
            "",
            "| hosts | wall (s) | min | max |",
            "|---|---|---|---|",
        ]
        for n, runs in noop.items():
            lines.append(
                f"| {n} | {statistics.median(runs):.2f} | {min(runs):.2f} | {max(runs):.2f} |"
            )
        ratio = statistics.median(noop[5]) / statistics.median(noop[1])
        lines += [
            "",
            f"5 hosts / 1 host: {ratio:.2f}x (goal <= 1.30x); 5 hosts "
            f"{statistics.median(noop[5]):.2f} s (goal <= 1.5 s).",
            "",
            f"Cold provision of one fresh host (Debian 12, no docker): {cold:.1f} s in "
            f"all; apt tasks (package lists, downloads, installs) {apt:.1f} s; images "
            f"from the controller {image:.1f} s; drfleet's own work (connection, facts, "
            f"the other tasks, swarm-less agent deploy) {cold - apt - image:.1f} s. "
            f"Five fresh hosts at once: {first:.1f} s.",
            "",
        ]
        # 3. a 1 GB image to 3 hosts
        if not args.skip_image:
            size = big_image()
            with TestBed(3, tmp / "img", image=ensure_docker_host_image(tmp / "bake")) as bed:
                for h in bed.hosts.values():
                    deadline = time.monotonic() + 60
                    while (
                        bed.exec(h, "docker info >/dev/null 2>&1 && echo ok", check=False) != "ok\n"
                        and time.monotonic() < deadline
                    ):
                        time.sleep(0.5)
                book = tmp / "img.yml"
                book.write_text(
                    f"- hosts: all\n  become: true\n  tasks:\n    - name: big\n"
                    f"      docker_image: {{images: [{BIG}]}}\n"
                )
                elapsed, _ = provision(bed.inventory, env_dir, "--playbook", str(book))
            mb = size / 1e6
            lines += [
                f"A {mb:.0f} MB image (random data) streamed from the controller's docker "
                f"to 3 hosts at once over SSH (`docker save` -> `docker load`): "
                f"{elapsed:.1f} s, {3 * mb / elapsed:.0f} MB/s in all, "
                f"{mb / elapsed:.0f} MB/s per host.",
                "",
            ]
    publish("provision", "invoke provision", lines)


if __name__ == "__main__":
    main()

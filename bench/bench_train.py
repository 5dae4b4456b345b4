"""From `invoke train` to every container running: 3 test-bed hosts, 5 workers, multi-config,
images already on the hosts (goal: under 10 s). The stand-in simapp plays the containers.

Run: python -m bench.bench_train [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.results import publish
from tests.testbed import TestBed, ensure_docker_host_image
from tests.testbed.images import ensure_standin
from tests.testbed.test_train import provisioned, write_drfc

REPO = Path(__file__).resolve().parent.parent


def invoke(*args: str) -> float:
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=REPO, check=True, capture_output=True
    )
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    ensure_standin()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        env_dir = write_drfc(
            tmp / "drfc", 5, {2: "Monaco", 3: "Bowtie_track", 4: "Monaco", 5: "Bowtie_track"}, 10
        )
        with TestBed(3, tmp / "bed", image=ensure_docker_host_image(tmp / "bake")) as bed:
            provisioned(bed, env_dir)
            inv = str(bed.inventory)
            times, stops = [], []
            for _ in range(args.rounds):
                times.append(
                    invoke("train", "--inventory", inv, "--env-dir", str(env_dir), "--wipe")
                )
                stops.append(invoke("stop", "--inventory", inv))
    lines = [
        f"3 test-bed hosts, 5 workers (multi-config, 3 worlds), images present, stand-in "
        f"simapp; whole command, median of {args.rounds}:",
        "",
        "| step | seconds | goal |",
        "|---|---|---|",
        f"| `invoke train` until every container runs (minio, upload, overlay check, "
        f"7 containers) | {statistics.median(times):.1f} (min {min(times):.1f}) | < 10 |",
        f"| `invoke stop` (algo-* included) | {statistics.median(stops):.1f} | |",
    ]
    publish("train", "invoke train", lines)


if __name__ == "__main__":
    main()

"""How soon `invoke status` reports a host that went away (issue 7: within 15 s), and how
long it takes when every host answers. Records it in bench/RESULTS.md.

Run: python -m bench.bench_status [--rounds N]
Three cases on a 2-host test bed whose h2 is: up; stopped (its address has no owner: no
route); cut off (iptables drops every packet, so connects time out). The inventory keeps the
default connect_timeout (10 s): status caps it for itself.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.results import publish
from tests.testbed import TestBed, ensure_docker_host_image

REPO = Path(__file__).resolve().parent.parent
CUT = "iptables -{op} INPUT -i eth0 -j DROP && iptables -{op} OUTPUT -o eth0 -j DROP"


def timed(inventory: Path, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "invoke", "status", "--inventory", str(inventory), "--json"],
            cwd=REPO,
            capture_output=True,
        )
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(bed: TestBed, rounds: int) -> tuple[float, float, float]:
    bed.write_inventory()
    doc = yaml.safe_load(bed.inventory.read_text())
    del doc["all"]["vars"]["connect_timeout"]  # the default, as users have it
    bed.inventory.write_text(yaml.safe_dump(doc))
    up = timed(bed.inventory, rounds)
    bed.exec("h2", CUT.format(op="I"))
    cut = timed(bed.inventory, rounds)
    bed.exec("h2", CUT.format(op="D"))
    bed.stop("h2")
    return up, timed(bed.inventory, rounds), cut


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        image = ensure_docker_host_image(Path(tmp))  # it has iptables
        with TestBed(2, Path(tmp) / "bed", image=image) as bed:
            up, stopped, cut = measure(bed, args.rounds)
    lines = [
        f"Median of {args.rounds} runs of the whole command, 2 test-bed hosts, default "
        "connect_timeout; status caps it at 4 s with one retry. Goal: under 15 s.",
        "",
        "| h2 is | invoke status (s) |",
        "|---|---|",
        f"| up | {up:.2f} |",
        f"| stopped (no route) | {stopped:.2f} |",
        f"| cut off (packets dropped) | {cut:.2f} |",
    ]
    publish("status", "invoke status with a host gone", lines)


if __name__ == "__main__":
    main()

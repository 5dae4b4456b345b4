"""The agent's cost on a host: apply-to-running time for 5 containers, and an idle agent's
memory and CPU over 60 s. Runs the bundled agent (drfleet-agent.pyz) with `python3 -S`,
as on a host: nothing but the bundle and the standard library.

Run: python -m bench.bench_agent [--idle 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

from bench.results import publish
from drfleet.hosts import agent_bundle
from tests.testbed.images import ensure_busybox

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=float, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    image = ensure_busybox()
    client = docker.from_env()
    fleet = f"bench{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory() as tmp:
        pyz, state = Path(tmp) / "agent.pyz", Path(tmp) / "state"
        agent_bundle.write(pyz)
        proc = subprocess.Popen(
            [sys.executable, "-S", str(pyz), "run", "--state-dir", str(state)],
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(1.5)
            times = []
            for r in range(args.rounds):
                doc = {
                    "fleet": fleet,
                    "run_id": str(r),
                    "generation": r + 1,
                    "containers": [
                        {
                            "name": f"{fleet}-w{i}",
                            "image": image,
                            "command": ["sleep", "3600"],
                            "ports": {"8080/tcp": None},
                        }
                        for i in range(1, 6)
                    ],
                }
                t = time.perf_counter()
                subprocess.run(
                    [
                        sys.executable,
                        "-S",
                        str(pyz),
                        "apply",
                        "--state-dir",
                        str(state),
                        "--wait",
                        "60",
                    ],
                    input=json.dumps(doc),
                    text=True,
                    check=True,
                    capture_output=True,
                )
                times.append(time.perf_counter() - t)
            time.sleep(3)
            c0, t0 = cpu_seconds(proc.pid), time.monotonic()
            peak = rss_mb(proc.pid)
            while time.monotonic() - t0 < args.idle:
                time.sleep(min(5, args.idle))
                peak = max(peak, rss_mb(proc.pid))
            cpu = (cpu_seconds(proc.pid) - c0) / (time.monotonic() - t0) * 100
        finally:
            proc.terminate()
            proc.wait(10)
            for c in client.containers.list(all=True, filters={"label": f"drfleet.fleet={fleet}"}):
                c.remove(force=True)
    lines = [
        "The bundled agent (drfleet-agent.pyz, `python3 -S`) against this machine's dockerd, "
        "5 busybox containers each publishing a port.",
        "",
        "| measure | result | goal |",
        "|---|---|---|",
        f"| apply -> all 5 running (median of {args.rounds}; each round replaces all 5) | "
        f"{statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f}) | |",
        f"| idle resident memory, peak over {args.idle:g} s | {peak:.1f} MB | <= 40 MB |",
        f"| idle CPU over {args.idle:g} s | {cpu:.2f} % of a core | <= 1 % |",
    ]
    publish("agent", "host agent", lines)


if __name__ == "__main__":
    main()

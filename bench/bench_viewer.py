"""Six worker streams at once through the viewer's SSH proxy, against the same six read
directly: frames per second per stream, and the viewer process's CPU.

Run: python -m bench.bench_viewer [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench.bench_agent import cpu_seconds
from bench.results import publish
from tests.testbed import TestBed, ensure_docker_host_image
from tests.testbed.images import ensure_standin
from tests.testbed.test_train import write_drfc
from tests.testbed.test_viewer import free_port, get

REPO = Path(__file__).resolve().parent.parent


def count_frames(url: str, seconds: float, out: list[int]) -> None:
    n = 0
    with urllib.request.urlopen(url, timeout=15) as r:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            n += r.read1(1 << 16).count(b"\xff\xd8")
    out.append(n)


def read_all(urls: list[str], seconds: float) -> list[float]:
    results: list[int] = []
    threads = [threading.Thread(target=count_frames, args=(u, seconds, results)) for u in urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [n / seconds for n in results]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15)
    args = ap.parse_args()
    ensure_standin()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        env_dir = write_drfc(tmp / "drfc", 6, {k: f"world{k}" for k in range(2, 7)}, 12)
        image = ensure_docker_host_image(tmp / "bake")
        with TestBed(2, tmp / "bed", image=image) as bed:
            bed.write_inventory(worker_vcpus=1, trainer_vcpus=1, vcpus=4)
            inv = str(bed.inventory)
            for cmd in (
                ["provision", "--env-dir", str(env_dir), "--images-from", "controller"],
                ["train", "--env-dir", str(env_dir)],
            ):
                subprocess.run(
                    [sys.executable, "-m", "invoke", *cmd, "--inventory", inv],
                    cwd=REPO,
                    check=True,
                    capture_output=True,
                )
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "invoke", "viewer", "--inventory", inv, "--port", str(port)],
                cwd=REPO,
                stdout=subprocess.DEVNULL,
            )
            try:
                base = f"http://127.0.0.1:{port}"
                for _ in range(100):
                    try:
                        workers = json.loads(get(base + "/api/workers"))
                        break
                    except OSError:
                        time.sleep(0.2)
                query = "?topic=kvs_stream&quality=75&width=480&height=360"
                direct = read_all(
                    [f"http://{w['address']}:{w['port']}/stream{query}" for w in workers],
                    args.seconds,
                )
                viewer_pid = int(
                    subprocess.run(
                        ["pgrep", "-f", f"viewer --inventory {inv}"], capture_output=True, text=True
                    ).stdout.split()[0]
                )
                c0 = cpu_seconds(viewer_pid)
                t0 = time.monotonic()
                proxied = read_all(
                    [f"{base}/stream/{w['slot']}{query}" for w in workers], args.seconds
                )
                cpu = (cpu_seconds(viewer_pid) - c0) / (time.monotonic() - t0) * 100
            finally:
                proc.terminate()
                proc.wait(10)
                subprocess.run(
                    [sys.executable, "-m", "invoke", "stop", "--inventory", inv],
                    cwd=REPO,
                    capture_output=True,
                )
    lines = [
        f"{len(workers)} stand-in workers (MJPEG 480x360, about 5 frames/s each) on 2 "
        f"test-bed hosts, all read at once for {args.seconds:g} s:",
        "",
        "| path | frames/s per stream (median) | min | max |",
        "|---|---|---|---|",
        f"| direct to each worker | {statistics.median(direct):.1f} | {min(direct):.1f} | "
        f"{max(direct):.1f} |",
        f"| through the viewer (SSH direct-tcpip) | {statistics.median(proxied):.1f} | "
        f"{min(proxied):.1f} | {max(proxied):.1f} |",
        "",
        f"The viewer process used {cpu:.0f} % of one core while relaying the six streams "
        f"(machine: {os.cpu_count()} vCPUs).",
    ]
    publish("viewer", "invoke viewer", lines)


if __name__ == "__main__":
    main()

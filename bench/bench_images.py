"""Images from the controller to a fleet, with the controller's link shaped, recorded in
bench/RESULTS.md (issue 17). Side by side in one run:

- controller-direct (the baseline: one `docker save | ssh | docker load` per host, what drfleet
  did before) and controller (one archive, cut to the layers the hosts lack, relayed host to
  host over SSH);
- a 1 GB image (random data) to 1 and to 4 hosts that lack it, then an image that adds one
  50 MB layer to it, to 4 hosts that hold the first.

The controller's link is `tc qdisc ... tbf rate RATE` on the test network's bridge device:
only what this machine sends into the network passes it; hosts reach each other across the
bridge unshaped, as inside a cloud region. The bytes that left the controller are that
device's transmit count. Whole `invoke provision` commands (a playbook of the one image task).

Run: python -m bench.bench_images [--rate 200mbit]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker

from bench.bench_provision import BIG, big_image
from bench.results import publish
from tests.testbed import TestBed, ensure_docker_host_image

REPO = Path(__file__).resolve().parent.parent
NEXT = "drfleet-bench/big:1g-next"
MB = 1 << 20


def next_image() -> int:
    client = docker.from_env()
    with contextlib.suppress(docker.errors.ImageNotFound):
        return int(client.images.get(NEXT).attrs["Size"])
    with tempfile.TemporaryDirectory() as ctx:
        (Path(ctx) / "more").write_bytes(os.urandom(50 * MB))
        (Path(ctx) / "Dockerfile").write_text(f"FROM {BIG}\nCOPY more /more\n")
        client.images.build(path=ctx, tag=NEXT, rm=True)
    return int(client.images.get(NEXT).attrs["Size"])


@contextlib.contextmanager
def shaped(dev: str, rate: str) -> Iterator[None]:
    subprocess.run(
        ["tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate, "burst", "256kb",
         "latency", "200ms"],
        check=True,
    )  # fmt: skip
    try:
        yield
    finally:
        subprocess.run(["tc", "qdisc", "del", "dev", dev, "root"], check=False)


def tx(dev: str) -> int:
    return int(Path(f"/sys/class/net/{dev}/statistics/tx_bytes").read_text())


def push(bed: TestBed, dev: str, book: Path, source: str, hosts: list[str]) -> tuple[float, int]:
    before, t = tx(dev), time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "invoke", "provision", "-i", str(bed.inventory), "--playbook",
         str(book), "--images-from", source, "--host", ",".join(hosts), "--json"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    elapsed, sent = time.perf_counter() - t, tx(dev) - before
    doc = json.loads(out.stdout)
    bad = {h: r for h, r in doc["hosts"].items() if r["failed"] or r["unreachable"]}
    if bad or out.returncode:
        raise SystemExit(
            f"provision failed: {json.dumps(bad, indent=1)[:3000]}{out.stderr[-2000:]}"
        )
    return elapsed, sent


def drop(bed: TestBed, *images: str) -> None:
    for h in bed.hosts:
        bed.exec(h, f"docker rmi -f {' '.join(images)} >/dev/null 2>&1; true")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", default="200mbit")
    ap.add_argument("--sources", default="controller-direct,controller")
    args = ap.parse_args()
    sources = args.sources.split(",")
    size, next_size = big_image(), next_image()
    rows: list[tuple[str, str, float, int]] = []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        books = {}
        for image in (BIG, NEXT):
            books[image] = tmp / f"{image.rsplit(':', 1)[1]}.yml"
            books[image].write_text(
                "- name: Images\n  hosts: all\n  become: true\n  tasks:\n"
                f"    - name: Simulation images\n      docker_image:\n        images: [{image}]\n"
            )
        with TestBed(4, tmp / "bed", image=ensure_docker_host_image(tmp / "bake")) as bed:
            bed.write_inventory()
            dev = "br-" + str(bed.network.id)[:12]
            with shaped(dev, args.rate):
                for source in sources:
                    for n in (1, 4):
                        drop(bed, NEXT, BIG)
                        hosts = [f"h{i}" for i in range(1, n + 1)]
                        elapsed, sent = push(bed, dev, books[BIG], source, hosts)
                        rows.append((source, f"1 GB image to {n} host(s)", elapsed, sent))
                    elapsed, sent = push(bed, dev, books[NEXT], source, list(bed.hosts))
                    rows.append((source, "+ one 50 MB layer, to 4 hosts", elapsed, sent))
            drop(bed, NEXT, BIG)
    t = {(s, c): (e, b) for s, c, e, b in rows}
    lines = [
        f"Controller's link shaped to {args.rate} (tbf on the test network's bridge: only what "
        "this machine sends); the hosts' links unshaped. Image: "
        f"{size / MB:.0f} MiB of random data on busybox; the second adds a "
        f"{(next_size - size) / MB:.0f} MiB layer. Whole `invoke provision` (one image task), "
        "4 test-bed hosts; bytes are the bridge device's transmit count.",
        "",
        "| images from | case | seconds | MiB left the controller | x image |",
        "|---|---|---|---|---|",
    ]
    for source, case, elapsed, sent in rows:
        base = next_size - size if case.startswith("+") else size
        lines.append(f"| {source} | {case} | {elapsed:.1f} | {sent / MB:.0f} | {sent / base:.2f} |")
    for source in sources:
        one, four = (
            t[(source, "1 GB image to 1 host(s)")][0],
            t[(source, "1 GB image to 4 host(s)")][0],
        )
        lines.append("")
        lines.append(f"{source}: 4 hosts / 1 host = {four / one:.2f}x")
    lines += [
        "",
        "Goals (relayed, `controller`): 4 hosts <= 1.3x the time of 1; bytes leaving the "
        "controller <= 1.05x the image whatever the number of hosts; the 50 MB layer moves "
        "about 50 MB.",
    ]
    publish("images", "images from the controller", lines)


if __name__ == "__main__":
    main()

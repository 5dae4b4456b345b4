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


def cpu() -> tuple[int, int]:
    """(busy, total) jiffies of this machine's CPUs so far (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def push(bed: TestBed, book: Path, source: str, hosts: list[str]) -> tuple[float, int, float]:
    """Seconds, bytes that left this machine, and how busy its CPUs were meanwhile (0-1)."""
    before, t, (busy, total) = bed.sent(), time.perf_counter(), cpu()
    out = subprocess.run(
        [sys.executable, "-m", "invoke", "provision", "-i", str(bed.inventory), "--playbook",
         str(book), "--images-from", source, "--host", ",".join(hosts), "--json"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    elapsed, sent = time.perf_counter() - t, bed.sent() - before
    busy2, total2 = cpu()
    doc = json.loads(out.stdout)
    bad = {h: r for h, r in doc["hosts"].items() if r["failed"] or r["unreachable"]}
    if bad or out.returncode:
        raise SystemExit(
            f"provision failed: {json.dumps(bad, indent=1)[:3000]}{out.stderr[-2000:]}"
        )
    return elapsed, sent, (busy2 - busy) / max(1, total2 - total)


def drop(bed: TestBed, *images: str) -> None:
    for h in bed.hosts:
        bed.exec(h, f"docker rmi -f {' '.join(images)} >/dev/null 2>&1; true")


def forget_index(image: str) -> None:
    """Drops what an earlier run kept of the image's archive (drfleet.images.image_relay), so the
    first partial send is measured as a user meets it."""
    image_id = str(docker.from_env().images.get(image).id).split(":")[-1]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    (cache / "drfleet" / "image-archives" / f"{image_id}.json").unlink(missing_ok=True)


Row = tuple[str, str, str, float, int, float]  # source, link, case, seconds, bytes, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", default="200mbit")
    ap.add_argument("--sources", default="controller-direct,controller")
    args = ap.parse_args()
    sources = args.sources.split(",")
    size, next_size = big_image(), next_image()
    rows: list[Row] = []
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
            every = list(bed.hosts)

            def case(source: str, link: str, name: str, book: Path, hosts: list[str]) -> None:
                rows.append((source, link, name, *push(bed, book, source, hosts)))

            with bed.shaped(args.rate):
                for source in sources:
                    for n in (1, 4):
                        drop(bed, NEXT, BIG)
                        case(source, args.rate, f"1 GB image to {n} host(s)", books[BIG],
                             every[:n])  # fmt: skip
                    forget_index(NEXT)
                    case(source, args.rate, "+ one 50 MB layer, to 4 hosts", books[NEXT], every)
                    if source == "controller":  # the archive's index kept from the first send
                        drop(bed, NEXT)
                        case(source, args.rate, "+ the same layer again (index kept)",
                             books[NEXT], every)  # fmt: skip
            for n in (1, 4):  # the machine's own limit: the same, the link unshaped
                drop(bed, NEXT, BIG)
                case("controller", "unshaped", f"1 GB image to {n} host(s)", books[BIG],
                     every[:n])  # fmt: skip
            drop(bed, NEXT, BIG)
    lines = [
        f"Controller's link shaped to {args.rate} (tbf on the test network's bridge: only what "
        "this machine sends), then unshaped; the hosts' links unshaped. Image: "
        f"{size / MB:.0f} MiB of random data on busybox; the second adds a "
        f"{(next_size - size) / MB:.0f} MiB layer. Whole `invoke provision` (one image task), "
        "4 test-bed hosts; bytes are the bridge device's transmit count; CPU: how busy this "
        f"machine's {os.cpu_count()} vCPUs were meanwhile (all the hosts share them).",
        "",
        "| images from | controller's link | case | seconds | MiB left the controller "
        "| x image | CPU busy |",
        "|---|---|---|---|---|---|---|",
    ]
    t = {(src, link, name): secs for src, link, name, secs, _b, _c in rows}
    for src, link, name, secs, sent, busy in rows:
        base = next_size - size if name.startswith("+") else size
        lines.append(
            f"| {src} | {link} | {name} | {secs:.1f} | {sent / MB:.0f} | {sent / base:.2f} "
            f"| {busy:.0%} |"
        )
    lines.append("")
    for src, link in [*((s, args.rate) for s in sources), ("controller", "unshaped")]:
        one = t[(src, link, "1 GB image to 1 host(s)")]
        four = t[(src, link, "1 GB image to 4 host(s)")]
        lines.append(f"- {src}, {link}: 4 hosts / 1 host = {four / one:.2f}x")
    lines += [
        "",
        "Goals (relayed, `controller`): 4 hosts <= 1.3x the time of 1; bytes leaving the "
        "controller <= 1.05x the image whatever the number of hosts; the 50 MB layer moves "
        "about 50 MB.",
    ]
    publish("images", "images from the controller", lines)


if __name__ == "__main__":
    main()

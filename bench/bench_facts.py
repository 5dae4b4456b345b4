"""Times `invoke facts` on 1 and 3 test-bed hosts and records it in bench/RESULTS.md.

Run: python -m bench.bench_facts [--rounds N]
Two figures per size: the whole command (process start included) and drfleet's own fan-out
in-process; plus how many SSH connections and remote commands each host cost.
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
from drfleet.hosts import facts, inventory, remote
from tests.testbed import TestBed

REPO = Path(__file__).resolve().parent.parent


def counted() -> dict[str, int]:
    """Counts SSH connections and remote commands by wrapping the session's two edges."""
    counts = {"connections": 0, "commands": 0}
    real_open, real_exec = remote.SSHSession.open, remote.SSHSession._exec

    def open_(self: remote.SSHSession) -> None:
        was = self._connection().is_connected
        real_open(self)
        counts["connections"] += 0 if was else 1

    def exec_(self: remote.SSHSession, *a: object, **k: object) -> tuple[int, str, str]:
        counts["commands"] += 1
        return real_exec(self, *a, **k)  # type: ignore[arg-type]

    remote.SSHSession.open = open_  # type: ignore[method-assign]
    remote.SSHSession._exec = exec_  # type: ignore[method-assign]
    return counts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    counts = counted()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, TestBed(3, Path(tmp)) as bed:
        inv = inventory.load(bed.inventory)
        for n in (1, 3):
            names = [f"h{i}" for i in range(1, n + 1)]
            cli, inproc = [], []
            for _ in range(args.rounds):
                t = time.perf_counter()
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "invoke",
                        "facts",
                        "--inventory",
                        str(bed.inventory),
                        "--host",
                        ",".join(names),
                        "--json",
                    ],
                    cwd=REPO,
                    check=True,
                    capture_output=True,
                )
                cli.append(time.perf_counter() - t)
            counts.update(connections=0, commands=0)
            for _ in range(args.rounds):
                t = time.perf_counter()
                out = facts.gather_all(inv.select(names), remote.Options())
                inproc.append(time.perf_counter() - t)
                assert all(o.ok for o in out)
            per_host = (
                counts["connections"] / (n * args.rounds),
                counts["commands"] / (n * args.rounds),
            )
            rows.append((n, statistics.median(cli), statistics.median(inproc), per_host))
    one, three = rows[0], rows[1]
    lines = [
        f"Median of {args.rounds} runs against test-bed hosts (containers with sshd on this "
        "machine), strict host-key checking, become via sudo.",
        "",
        "| hosts | whole command (s) | fan-out in-process (s) | SSH connections / host | "
        "remote commands / host |",
        "|---|---|---|---|---|",
    ]
    for n, c, i, (conns, cmds) in rows:
        lines.append(f"| {n} | {c:.3f} | {i:.3f} | {conns:g} | {cmds:g} |")
    lines += [
        "",
        f"3 hosts / 1 host: whole command {three[1] / one[1]:.2f}x, "
        f"fan-out {three[2] / one[2]:.2f}x (goal: well under 2x).",
    ]
    publish("facts", "invoke facts", lines)


if __name__ == "__main__":
    main()

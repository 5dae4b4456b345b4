"""Planning cost with no connection: 100 hosts and 300 workers (pure functions).

Run: python -m bench.bench_plan
"""

from __future__ import annotations

import statistics
import time

from bench.results import publish
from drfleet.drfc.checks import shares
from drfleet.runs.placement import Capacity, place


def main() -> None:
    caps = [Capacity(host=f"h{i:03d}", vcpus=16, trainer=i == 0) for i in range(100)]
    n = 300
    worlds = [f"world{k % 7}" for k in range(n)]
    files = [f"training_params_{k + 1}.yaml" for k in range(n)]
    times = []
    for _ in range(20):
        t = time.perf_counter()
        plan = place(n, caps, worlds, shares(3000, n), files)
        times.append(time.perf_counter() - t)
    assert len(plan.workers) == n
    per_host = {w.host for w in plan.workers}
    lines = [
        f"Placing {n} workers on 100 hosts of 16 vCPUs (pure, no connection), median of "
        f"{len(times)}: {statistics.median(times) * 1000:.1f} ms "
        f"(max {max(times) * 1000:.1f} ms); {len(per_host)} hosts used.",
    ]
    publish("plan", "plan", lines)


if __name__ == "__main__":
    main()

"""How training goes, from what the simapp writes to S3: the iterations the trainer has saved
(model/deepracer_checkpoints.json) and each worker's training metrics
(markov/metrics/s3_metrics.py TrainingMetrics: one entry per episode played). Pure: launch
reads the objects."""

from __future__ import annotations

import os
from typing import Any

from drfleet.runs.placement import Plan


def metrics_key(key: str, slot: int, workers: int) -> str:
    """Where worker `slot` writes its metrics: rollout_worker.py gives index idx > 0 of
    several workers <key>_<idx>.json."""
    idx = slot - 1
    if workers > 1 and idx > 0:
        stem, ext = os.path.splitext(key)
        return f"{stem}_{idx}{ext}"
    return key


def iterations(checkpoints: dict[str, Any] | None) -> int:
    """Iterations the trainer has saved: its last checkpoint is named <N>_Step-<steps>.ckpt."""
    name = str(((checkpoints or {}).get("last_checkpoint") or {}).get("name", ""))
    head = name.split("_", 1)[0]
    return int(head) + 1 if head.isascii() and head.isdigit() else 0


def worker(doc: dict[str, Any] | None, share: int) -> dict[str, Any]:
    """A worker's episodes so far and the mean reward and progress of its latest `share`
    (its episodes of one iteration)."""
    played = [m for m in (doc or {}).get("metrics", []) if m.get("phase") == "training"]
    last = played[-share:] if share > 0 else []
    return {
        "episodes": len(played),
        "reward": round(sum(m.get("reward_score", 0) for m in last) / len(last), 1)
        if last
        else None,
        "progress": round(sum(m.get("completion_percentage", 0) for m in last) / len(last), 1)
        if last
        else None,
    }


def summary(
    checkpoints: dict[str, Any] | None, docs: dict[int, dict[str, Any] | None], plan: Plan
) -> dict[str, Any]:
    return {
        "iterations": iterations(checkpoints),
        "workers": {
            str(w.slot): worker(docs.get(w.slot), w.episodes)
            for w in sorted(plan.workers, key=lambda w: w.slot)
        },
    }


def per_iteration(
    docs: dict[int, dict[str, Any] | None], plan: Plan, saved: int = 0
) -> list[dict[str, Any]]:
    """Mean reward and progress of each iteration the workers have played their shares of,
    over all workers' episodes of it: the viewer's plot, which grows as iterations complete.

    A worker's file lists its episodes since it started (s3_metrics.py keeps them in memory
    and rewrites the object), so a worker that restarted has only the iterations since: it
    joined at the trainer's current one. A worker with fewer than share * `saved` episodes
    (saved: the iterations the trainer has saved) is such a one; its complete shares are the
    latest iterations before the one it plays, and the others' episodes make the earlier
    points. Episodes count from the file's start for every other worker."""
    played = {
        w.slot: [
            m for m in (docs.get(w.slot) or {}).get("metrics", []) if m.get("phase") == "training"
        ]
        for w in plan.workers
    }
    shares = {w.slot: w.episodes for w in plan.workers}
    if not played or any(s <= 0 for s in shares.values()):
        return []
    whole = [slot for slot, ms in played.items() if len(ms) >= shares[slot] * saved]
    complete = min((len(played[slot]) // shares[slot] for slot in whole), default=saved)
    by_iteration: dict[int, list[dict[str, Any]]] = {i: [] for i in range(1, complete + 1)}
    for slot, ms in played.items():
        share = shares[slot]
        full, playing = divmod(len(ms), share)
        if slot in whole:
            first = 1
        elif playing or complete > saved:
            # a restarted worker's full shares end before the iteration it plays (saved + 1),
            # or, once the others are done with that one too, with it
            first = (saved if playing else complete) - full + 1
        else:  # done with saved + 1 already, or not begun it: left out until that is known
            continue
        for k in range(full):
            if first + k in by_iteration:
                by_iteration[first + k] += ms[k * share : (k + 1) * share]
    out = []
    for i, episodes in by_iteration.items():
        if not episodes:
            continue
        out.append(
            {
                "iteration": i,
                "episodes": len(episodes),
                "reward": round(sum(m.get("reward_score", 0) for m in episodes) / len(episodes), 2),
                "progress": round(
                    sum(m.get("completion_percentage", 0) for m in episodes) / len(episodes), 2
                ),
            }
        )
    return out

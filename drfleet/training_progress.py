"""How training goes, from what the simapp writes to S3: the iterations the trainer has saved
(model/deepracer_checkpoints.json) and each worker's training metrics
(markov/metrics/s3_metrics.py TrainingMetrics: one entry per episode played). Pure: launch
reads the objects."""

from __future__ import annotations

import os
from typing import Any

from drfleet.plan import Plan


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
    return int(head) + 1 if head.isdigit() else 0


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

"""How training goes, read from what the simapp writes (pure)."""

from __future__ import annotations

from drfleet import training_progress as tp
from drfleet.plan import Placement, Plan


def test_each_worker_index_above_zero_has_its_own_metrics_file() -> None:
    """rollout_worker.py: with several workers, index idx > 0 writes <key>_<idx>.json."""
    key = "m/metrics/TrainingMetrics.json"
    assert tp.metrics_key(key, 1, 3) == key
    assert tp.metrics_key(key, 3, 3) == "m/metrics/TrainingMetrics_2.json"
    assert tp.metrics_key(key, 1, 1) == key


def test_iterations_are_the_last_checkpoints_number_plus_one() -> None:
    assert tp.iterations({"last_checkpoint": {"name": "11_Step-3400.ckpt"}}) == 12
    assert tp.iterations(None) == 0
    assert tp.iterations({"last_checkpoint": {"name": "odd"}}) == 0


def episode(reward: int, progress: int, phase: str = "training") -> dict[str, object]:
    return {"reward_score": reward, "completion_percentage": progress, "phase": phase}


def test_a_workers_latest_share_gives_its_means() -> None:
    doc = {
        "metrics": [
            episode(10, 20),
            episode(12, 30),
            episode(99, 100, "evaluation"),  # the model picker's laps are not training
            episode(20, 50),
            episode(30, 70),
        ]
    }
    assert tp.worker(doc, 2) == {"episodes": 4, "reward": 25.0, "progress": 60.0}
    assert tp.worker(None, 2) == {"episodes": 0, "reward": None, "progress": None}


def test_summary_lists_every_planned_slot() -> None:
    plan = Plan(
        trainer="t",
        workers=[
            Placement(1, "t", "w", 2, "p_1.yaml", 8080),
            Placement(2, "a", "w", 1, "p_2.yaml", 8081),
        ],
    )
    got = tp.summary(
        {"last_checkpoint": {"name": "0_Step-300.ckpt"}},
        {1: {"metrics": [episode(5, 40), episode(7, 60)]}},
        plan,
    )
    assert got == {
        "iterations": 1,
        "workers": {
            "1": {"episodes": 2, "reward": 6.0, "progress": 50.0},
            "2": {"episodes": 0, "reward": None, "progress": None},
        },
    }

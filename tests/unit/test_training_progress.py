"""How training goes, read from what the simapp writes (pure)."""

from __future__ import annotations

from drfleet.runs import training_progress as tp
from drfleet.runs.placement import Placement, Plan


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


def test_the_plot_has_a_point_per_iteration_every_worker_completed() -> None:
    """Worker 1 plays 2 episodes an iteration, worker 2 one: iteration i is worker 1's
    episodes 2i-1..2i and worker 2's episode i, all averaged together; an iteration a worker
    is still playing is not a point yet."""
    plan = Plan(
        trainer="t",
        workers=[
            Placement(1, "t", "w", 2, "p_1.yaml", 8080),
            Placement(2, "a", "w", 1, "p_2.yaml", 8081),
        ],
    )
    docs: dict[int, dict[str, object] | None] = {
        1: {
            "metrics": [
                episode(10, 20),
                episode(20, 40),
                episode(99, 100, "evaluation"),
                episode(30, 60),
                episode(40, 80),
                episode(50, 100),  # iteration 3 begun
            ]
        },
        2: {"metrics": [episode(0, 0), episode(5, 30)]},
    }
    assert tp.per_iteration(docs, plan) == [  # type: ignore[arg-type]
        {"iteration": 1, "episodes": 3, "reward": 10.0, "progress": 20.0},
        {"iteration": 2, "episodes": 3, "reward": 25.0, "progress": 56.67},
    ]
    assert tp.per_iteration({1: None, 2: None}, plan) == []


def test_a_worker_that_restarted_counts_for_the_iterations_it_played_since() -> None:
    """s3_metrics.py starts its list afresh: a worker that restarted in iteration 3 has only
    the episodes since. With 4 iterations saved and one episode of the 5th played, its two
    full shares are iterations 3 and 4."""
    plan = Plan(
        trainer="t",
        workers=[
            Placement(1, "t", "w", 2, "p_1.yaml", 8080),
            Placement(2, "a", "w", 2, "p_2.yaml", 8081),
        ],
    )
    whole = {"metrics": [episode(10 * k, 10 * k) for k in (1, 1, 2, 2, 3, 3, 4, 4)]}
    restarted = {"metrics": [episode(3, 30), episode(3, 30), episode(4, 40), episode(4, 40),
                             episode(5, 50)]}  # fmt: skip
    got = tp.per_iteration({1: whole, 2: restarted}, plan, saved=4)
    assert [(p["iteration"], p["episodes"], p["reward"]) for p in got] == [
        (1, 2, 10.0),
        (2, 2, 20.0),
        (3, 4, 16.5),
        (4, 4, 22.0),
    ]
    # the same worker done with its share of the 5th, or not begun it: nobody can tell, so
    # it is left out until the other one is done with the 5th too
    restarted["metrics"].append(episode(5, 50))
    got = tp.per_iteration({1: whole, 2: restarted}, plan, saved=4)
    assert [(p["iteration"], p["episodes"]) for p in got] == [(1, 2), (2, 2), (3, 2), (4, 2)]
    whole["metrics"] += [episode(50, 50), episode(50, 50)]
    got = tp.per_iteration({1: whole, 2: restarted}, plan, saved=4)
    assert [(p["iteration"], p["episodes"], p["reward"]) for p in got][2:] == [
        (3, 4, 16.5),
        (4, 4, 22.0),
        (5, 4, 27.5),
    ]

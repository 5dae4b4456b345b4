"""The agent's decisions, as data: (desired, observed, records, now) -> actions."""

from drfleet_agent.reconcile import (
    L_FLEET,
    L_HASH,
    L_NAME,
    Backoff,
    Conflict,
    Create,
    Observed,
    Record,
    Remove,
    Start,
    decide,
)
from drfleet_agent.spec import from_dict

B = Backoff(base=10, cap=300, reset_after=600)


def desired(*names: str, run: str = "0", **extra: object):
    return from_dict(
        {
            "fleet": "f",
            "run_id": run,
            "generation": 1,
            "containers": [{"name": n, "image": "i", **extra} for n in names],
        }
    )


def seen(state, name: str, status: str = "running", **kw: object) -> Observed:
    spec = next(s for s in state.containers if s.name == name)
    labels = {L_FLEET: "f", L_NAME: name, L_HASH: spec.spec_hash(state.run_id)}
    labels.update(kw.pop("labels", {}))  # type: ignore[arg-type]
    return Observed(id=f"id-{name}-{status}", name=name, labels=labels, status=status, **kw)  # type: ignore[arg-type]


def test_missing_containers_are_created() -> None:
    d = desired("a", "b")
    plan = decide(d, [seen(d, "a")], {}, now=100)
    assert [type(a) for a in plan.actions] == [Create]
    assert plan.actions[0].spec.name == "b"


def test_running_and_matching_is_left_alone() -> None:
    d = desired("a")
    assert decide(d, [seen(d, "a")], {}, now=100).actions == []


def test_changed_spec_replaces_only_that_container() -> None:
    old = desired("a", "b")
    new = from_dict(
        {
            "fleet": "f",
            "run_id": "0",
            "generation": 2,
            "containers": [
                {"name": "a", "image": "i"},
                {"name": "b", "image": "i", "env": {"X": "1"}},
            ],
        }
    )
    plan = decide(new, [seen(old, "a"), seen(old, "b")], {}, now=100)
    assert plan.actions == [
        Remove("id-b-running", "b", "spec changed"),
        Create(new.containers[1], replaces="id-b-running"),
    ]


def test_new_run_replaces_everything() -> None:
    old, new = desired("a", run="0"), desired("a", run="1")
    plan = decide(new, [seen(old, "a")], {}, now=100)
    assert [type(a) for a in plan.actions] == [Remove, Create]


def test_no_longer_desired_is_removed_and_foreign_fleets_untouched() -> None:
    d = desired("a", "b")
    other = Observed("x", "x", {L_FLEET: "g", L_NAME: "x", L_HASH: "h"}, "running")
    plan = decide(desired("a"), [seen(d, "a"), seen(d, "b"), other], {}, now=100)
    assert plan.actions == [Remove("id-b-running", "b", "no longer desired")]


def test_unlabelled_container_with_the_name_is_a_conflict_never_touched() -> None:
    d = desired("a")
    squatter = Observed("zzz", "a", {}, "running")
    plan = decide(d, [squatter], {}, now=100)
    assert len(plan.actions) == 1 and isinstance(plan.actions[0], Conflict)
    assert "did not create" in plan.actions[0].message


def test_duplicates_keep_the_running_one() -> None:
    d = desired("a")
    run = seen(d, "a", started_at=50)
    dup = Observed("dup", "a-2", dict(run.labels), "exited")
    plan = decide(d, [dup, run], {}, now=100)
    assert plan.actions == [Remove("dup", "a", "duplicate")]


def test_created_but_never_started_is_started() -> None:
    d = desired("a")
    plan = decide(d, [seen(d, "a", status="created")], {}, now=100)
    assert plan.actions == [Start(d.containers[0], "id-a-created", restart=False)]


def test_crash_waits_for_backoff_then_restarts() -> None:
    d = desired("a", restart="always")
    dead = seen(d, "a", status="exited", exit_code=137, started_at=90, finished_at=95)
    plan = decide(d, [dead], {}, now=100, backoff=B)
    assert plan.actions == [] and plan.waiting == {"a": 105}
    plan = decide(d, [dead], {}, now=105, backoff=B)
    assert plan.actions == [Start(d.containers[0], dead.id, restart=True, exit_code=137, crashes=1)]


def test_backoff_doubles_and_caps() -> None:
    assert [B.delay(n) for n in range(7)] == [10, 20, 40, 80, 160, 300, 300]
    d = desired("a", restart="always")
    dead = seen(d, "a", status="exited", exit_code=1, started_at=90, finished_at=95)
    plan = decide(d, [dead], {"a": Record(restarts=3, crashes=3)}, now=100, backoff=B)
    assert plan.waiting == {"a": 95 + 80}


def test_long_clean_run_forgives_earlier_crashes() -> None:
    d = desired("a", restart="always")
    dead = seen(d, "a", status="exited", exit_code=1, started_at=0, finished_at=700)
    plan = decide(d, [dead], {"a": Record(crashes=5)}, now=710, backoff=B)
    assert plan.actions[0].crashes == 1  # type: ignore[union-attr]
    running = seen(d, "a", started_at=0)
    assert decide(d, [running], {"a": Record(crashes=5)}, now=700, backoff=B).forgive == {"a"}


def test_restart_policies() -> None:
    for policy, code, restarts in [
        ("on-failure", 0, False),
        ("on-failure", 2, True),
        ("never", 2, False),
        ("always", 0, True),
    ]:
        d = desired("a", restart=policy)
        dead = seen(d, "a", status="exited", exit_code=code, started_at=0, finished_at=1)
        plan = decide(d, [dead], {}, now=1000, backoff=B)
        assert bool(plan.actions) == restarts, (policy, code)
        assert (plan.done == {"a"}) != restarts


def test_exit_during_docker_outage_restarts_at_once_without_counting_a_crash() -> None:
    d = desired("a", restart="always")
    dead = seen(d, "a", status="exited", exit_code=143, started_at=10, finished_at=50)
    plan = decide(d, [dead], {"a": Record(crashes=2)}, now=60, backoff=B, outage=(49, 58))
    assert plan.actions == [
        Start(d.containers[0], dead.id, restart=True, exit_code=143, crashes=2, outage=True)
    ]

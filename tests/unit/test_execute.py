"""The one executor and the intents the commands build (no host touched): each command's
intent for given inputs, the executor's order, and its refusals (nothing told, the record as
it was)."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from drfleet_agent.spec import ContainerSpec

from drfleet.errors import DrfleetError
from drfleet.hosts.inventory import Host
from drfleet.hosts.remote import Result
from drfleet.names import METRICS_STACK, MINIO_STACK, TASKSET_SHIM, Run
from drfleet.runs import evaluation, execute, launch, runstate, s3access, training
from drfleet.runs.execute import EndRun, Fenced, Intent, Preflight, SaveRun, Stack
from drfleet.runs.placement import Plan, rebalance
from tests.unit.test_training import caps, drfc, inventory_stub

CREDS = {"access_key": "AK", "secret_key": "SK"}


# -- a host's agent as the executor sees it through a session --------------------------------
class Agents:
    """Every host's stacks as its agent would hold them (the agent's rules: an older
    generation of a stack refused unless forced; an empty stack dropped; clear drops the
    others), and every call in order, with whether the run record existed at that moment."""

    def __init__(self, env_dir: Path) -> None:
        self.env_dir = env_dir
        self.stacks: dict[str, dict[str, dict[str, Any]]] = {}
        self.calls: list[tuple[str, str, str, bool]] = []
        self.fail: set[str] = set()  # hosts whose apply fails as an unreachable host's would
        self.lock = threading.Lock()

    def status(self, host: str) -> str:
        held = self.stacks.get(host, {})
        return json.dumps(
            {
                "agent": {
                    "version": "0.2.0",
                    "fleet": "drfleet",
                    "stacks": {
                        k: {"run_id": v["run_id"], "generation": v["generation"]}
                        for k, v in held.items()
                    },
                },
                "containers": [
                    {**c, "state": "running", "stack": k}
                    for k, v in held.items()
                    for c in v["containers"]
                ],
            }
        )

    def session(self, host: str) -> Any:
        return FakeSession(self, Host(host, "192.0.2.1"))


class FakeSession:
    def __init__(self, agents: Agents, host: Host) -> None:
        self.agents, self.host = agents, host

    def close(self) -> None:
        pass

    def run(self, command: Any, stdin: Any = None, **_: Any) -> Result:
        line = command.display() if hasattr(command, "display") else str(command)
        a, name = self.agents, self.host.name
        record = runstate.path(a.env_dir).exists()

        def done(code: int, out: str = "", err: str = "") -> Result:
            return Result(name, line, code, out, err, 0.0)

        with a.lock:
            if TASKSET_SHIM in line:
                a.calls.append((name, "shim", "", record))
                return done(0)
            if " status " in f"{line} ":
                a.calls.append((name, "status", "", record))
                return done(0, a.status(name))
            if " apply " in f"{line} ":
                doc = json.loads(stdin)
                a.calls.append((name, "apply", doc["stack"], record))
                if name in a.fail:
                    from drfleet.hosts.remote import Unreachable

                    raise Unreachable(f"{name}: unreachable", where=name)
                held = a.stacks.setdefault(name, {})
                have = held.get(doc["stack"])
                newer = have and have["generation"] > doc["generation"]
                if newer and "--force" not in line:
                    return done(2, "", "an older generation")
                if "--clear" in line:
                    held.clear()
                if doc["containers"]:
                    held[doc["stack"]] = doc
                else:
                    held.pop(doc["stack"], None)
                return done(0, a.status(name))
        raise AssertionError(f"unexpected command on {name}: {line}")


def sessions(agents: Agents, *hosts: str) -> dict[str, Any]:
    return {h: agents.session(h) for h in hosts}


def container(name: str, role: str = "robomaker") -> ContainerSpec:
    return ContainerSpec(name, "img", role=role)


# -- each command's intent for given inputs ----------------------------------------------------
def prepared(tmp_path: Path, *hosts: tuple[str, int, bool]) -> training.Prepared:
    env = drfc(tmp_path)
    return training.prepare(env, {c.host: c for c in caps(*hosts)})


def test_train_intent_starts_minio_first_then_every_hosts_stack_with_the_record(
    tmp_path: Path,
) -> None:
    p = prepared(tmp_path, ("t", 16, True), ("a", 16, False))
    intent = launch.train_intent(p, CREDS, "127.0.0.1", True, False, False, False, False, {})
    first = intent.stacks[0]
    assert (first.host, first.name, first.early, first.force) == ("t", MINIO_STACK, True, False)
    assert [c.role for c in first.containers] == ["minio"]
    rest = intent.stacks[1:]
    assert {s.host for s in rest} == {"t", "a"} and all(s.owned and not s.early for s in rest)
    assert {s.name for s in rest} == {Run("0").stack}
    roles = sorted(c.role for s in rest for c in s.containers)
    assert roles == ["rl_coach"] + ["robomaker"] * 3
    assert intent.record == SaveRun("0", "bucket", "rl-deepracer-sagemaker", p.plan)
    assert intent.preflight == Preflight(False, {}) and intent.adopt is None
    assert intent.upload is not None and intent.reach is not None  # two hosts: the overlay
    assert execute.refusal(intent) is None


def test_train_intent_with_minio_running_adopts_its_keys_and_one_host_skips_the_reach_check(
    tmp_path: Path,
) -> None:
    p = prepared(tmp_path, ("t", 32, True))
    intent = launch.train_intent(p, CREDS, "127.0.0.1", False, True, True, True, True, {})
    assert MINIO_STACK not in {s.name for s in intent.stacks}
    assert intent.adopt == CREDS and intent.reach is None
    assert intent.preflight is not None and intent.preflight.replace
    assert intent.upload is not None and intent.upload.wipe and intent.upload.live


def _a_run_on_three_hosts(tmp_path: Path) -> tuple[Any, Path, training.Prepared, str]:
    """Capacities of a trainer and two worker hosts, the env dir, the run prepared on them,
    and a host that runs workers only."""
    c = caps(("t", 16, True), ("a", 8, False), ("b", 12, False))
    env = drfc(tmp_path)
    before = training.prepare(env, {x.host: x for x in c})
    return c, env, before, next(w.host for w in before.plan.workers if w.host != "t")


def test_rebalance_intent_skips_down_hosts_fences_them_and_names_the_record_it_read(
    tmp_path: Path,
) -> None:
    c, env, before, lost = _a_run_on_three_hosts(tmp_path)
    state = runstate.RunState("0", "bucket", "p", 7, before.plan, {"old": 3})
    survivors = {x.host: x for x in c if x.host != lost}
    p = training.prepare_from(env, survivors, before.plan, {lost}, inventory_stub())
    moved, _ = rebalance(before.plan, list(survivors.values()), {lost})
    p = dataclasses.replace(p, plan=moved)
    intent = launch.rebalance_intent(p, state, CREDS, {lost, "elsewhere"}, {lost, "elsewhere"}, {})
    assert lost not in {s.host for s in intent.stacks}
    assert isinstance(intent.record, SaveRun)
    assert intent.record.down == frozenset({lost}) and intent.record.based_on == 7
    assert execute.fenced_after(state, {"old"}, intent.record.down, 8) == {lost: 8}
    assert execute.fenced_after(state, set(), intent.record.down, 8) == {"old": 3, lost: 8}


def test_a_host_ec2_is_about_to_interrupt_is_told_to_drop_its_slots_not_fenced(
    tmp_path: Path,
) -> None:
    c, env, before, going = _a_run_on_three_hosts(tmp_path)
    state = runstate.RunState("0", "bucket", "p", 7, before.plan, {})
    p = training.prepare_from(env, {x.host: x for x in c}, before.plan, set(), inventory_stub())
    moved, _ = rebalance(before.plan, list(p.caps.values()), {going})
    p = dataclasses.replace(p, plan=moved)
    intent = launch.rebalance_intent(p, state, CREDS, set(), set(), {})
    told = {s.host: s for s in intent.stacks}
    assert set(told) == {"t", "a", "b"}
    assert told[going].containers == ()  # it drops the slots now, while it still answers
    assert all(s.generation is None for s in intent.stacks)  # today's generation, no fence
    assert isinstance(intent.record, SaveRun) and intent.record.down == frozenset()


def test_stop_intent_ends_both_stacks_then_minio_when_alone_and_the_sagemaker_container() -> None:
    run = Run("2")
    intent = launch.stop_intent(run, ["t", "a"], False, ["t"])
    on_a = [(s.name, s.force, s.when_alone) for s in intent.stacks if s.host == "a"]
    assert on_a == [
        (run.eval_stack, True, False),
        (run.stack, True, False),
        (MINIO_STACK, True, True),
    ]
    assert all(not s.containers for s in intent.stacks)
    assert intent.after == (execute.Sagemaker("t", "2"),) and intent.record == EndRun()
    everything = launch.stop_intent(run, ["t"], True, ["t"])
    assert [(s.clear, s.force) for s in everything.stacks] == [(True, True)]
    assert everything.after == (execute.Sagemaker("t", None),)


def test_fence_intent_tells_each_answering_host_at_its_own_generation() -> None:
    state = runstate.RunState("0", "b", "p", 9, Plan("t", []), {"a": 5, "b": 7})
    intent = launch.fence_intent(state, ["a", "c"])
    assert [(s.host, s.generation, s.containers) for s in intent.stacks] == [("a", 5, ())]
    assert intent.record == Fenced()


def test_evaluation_and_minio_intents() -> None:
    run = Run("1")
    spec = {"name": "drfleet-1-eval", "role": "evaluation", "image": "img"}
    start = evaluation.start_intent(run, "a", spec, None, {}, object())  # type: ignore[arg-type]
    (s,) = start.stacks
    assert (s.name, s.owned, s.force) == (run.eval_stack, True, False)
    assert s.containers == (container("drfleet-1-eval", "evaluation"),)
    assert start.preflight == Preflight(held=None)
    stop = evaluation.stop_intent(run, ["a", "b"])
    assert [(s.host, s.force, s.containers) for s in stop.stacks] == [
        ("a", True, ()),
        ("b", True, ()),
    ]
    minio = s3access.minio_intent("t", [{"name": "minio", "role": "minio", "image": "m"}], CREDS)
    assert minio.stacks[0].force and minio.adopt == CREDS and minio.preflight is not None


# -- the executor --------------------------------------------------------------------------------
def test_the_executor_saves_the_record_before_any_host_is_told_and_stages_nothing_else(
    tmp_path: Path,
) -> None:
    agents = Agents(tmp_path)
    intent = Intent(
        "train",
        (
            Stack("t", MINIO_STACK, "", (container("minio", "minio"),), early=True),
            Stack("t", "deepracer-0", "0", (container("rl", "rl_coach"),)),
            Stack("a", "deepracer-0", "0", (container("w1"),)),
        ),
        preflight=Preflight(),
        record=SaveRun("0", "bucket", "prefix", Plan("t", [])),
    )
    done = execute.execute(intent, tmp_path, sessions(agents, "t", "a"), 4)
    assert done.generation == 1 and all(o.ok for o in done.outcomes.values())
    kinds = [(h, k, st) for h, k, st, _ in agents.calls]
    # preflight (the shim on the worker host, every host's status) before any apply
    first_apply = next(i for i, c in enumerate(kinds) if c[1] == "apply")
    assert {k for _, k, _ in kinds[:first_apply]} == {"shim", "status"}
    # minio before the record; every run stack after it
    applies = [(h, st, rec) for h, k, st, rec in agents.calls if k == "apply"]
    assert applies[0] == ("t", MINIO_STACK, False)
    assert sorted(applies[1:]) == [("a", "deepracer-0", True), ("t", "deepracer-0", True)]
    state = runstate.load(tmp_path)
    assert state is not None and state.generation == 1 and state.fence == {}
    assert agents.stacks["a"]["deepracer-0"]["generation"] == 1


def test_a_refused_preflight_tells_no_host_and_leaves_the_record(tmp_path: Path) -> None:
    agents = Agents(tmp_path)
    agents.stacks["a"] = {"deepracer-0": {"run_id": "0", "generation": 50, "containers": []}}
    before = runstate.RunState("0", "b", "p", 4, Plan("t", []))
    runstate.save(tmp_path, before)
    raw = runstate.path(tmp_path).read_bytes()
    intent = Intent(
        "train",
        (Stack("a", "deepracer-0", "0", (container("w1"),)),),
        preflight=Preflight(),
        record=SaveRun("0", "b", "p", Plan("t", [])),
    )
    with pytest.raises(DrfleetError, match="holds generation 50"):
        execute.execute(intent, tmp_path, sessions(agents, "a"), 4)
    assert not [c for c in agents.calls if c[1] == "apply"]
    assert runstate.path(tmp_path).read_bytes() == raw


def test_a_record_changed_since_it_was_read_refuses_and_an_intent_without_preflight_too(
    tmp_path: Path,
) -> None:
    agents = Agents(tmp_path)
    runstate.save(tmp_path, runstate.RunState("0", "b", "p", 4, Plan("t", [])))
    stale = Intent(
        "rebalance",
        (Stack("a", "deepracer-0", "0", (container("w1"),)),),
        preflight=Preflight(held={}),
        record=SaveRun("0", "b", "p", Plan("t", []), based_on=3),
    )
    with pytest.raises(DrfleetError, match="run record changed"):
        execute.execute(stale, tmp_path, sessions(agents, "a"), 4)
    unguarded = Intent("x", (Stack("a", "deepracer-0", "0", (container("w1"),)),))
    with pytest.raises(ValueError, match="without a preflight"):
        execute.execute(unguarded, tmp_path, sessions(agents, "a"), 4)
    twice = Intent("x", (Stack("a", "s", "0"), Stack("a", "s", "0")))
    assert execute.refusal(twice) == "x: stack s twice for a"
    assert not agents.calls


def test_stop_keeps_the_hosts_it_could_not_tell_and_ends_minio_only_where_it_is_alone(
    tmp_path: Path,
) -> None:
    agents = Agents(tmp_path)
    run = Run("0")
    minio = {"run_id": "", "generation": 1, "containers": [{"name": "minio", "role": "minio"}]}
    worker = {"run_id": "0", "generation": 2, "containers": [{"name": "w1", "role": "x"}]}
    other = {"run_id": "1", "generation": 2, "containers": [{"name": "w9", "role": "x"}]}
    graphs = {"run_id": "", "generation": 1, "containers": [{"name": "g", "role": "metrics"}]}
    agents.stacks = {
        "t": {MINIO_STACK: dict(minio), run.stack: dict(worker), METRICS_STACK: graphs},
        "a": {MINIO_STACK: dict(minio), run.stack: dict(worker), "deepracer-1": other},
    }
    runstate.save(tmp_path, runstate.RunState("0", "b", "p", 2, Plan("t", [])))
    intent = launch.stop_intent(run, ["t", "a", "gone"], False, [])
    agents.fail = {"gone"}
    done = execute.execute(intent, tmp_path, sessions(agents, "t", "a", "gone"), 4)
    # the last run on t's minio: it went too; the metrics stack is no run, and stays
    assert set(agents.stacks["t"]) == {METRICS_STACK}
    assert set(agents.stacks["a"]) == {MINIO_STACK, "deepracer-1"}  # run 1 still uses it
    assert done.missed == ["gone"]
    state = runstate.load(tmp_path)
    assert state is not None and state.fence == {"gone": done.generation}
    assert state.plan.workers == []


def test_status_converge_tells_at_the_fence_generation_and_forgets_only_those_told(
    tmp_path: Path,
) -> None:
    agents = Agents(tmp_path)
    agents.stacks = {
        "a": {"deepracer-0": {"run_id": "0", "generation": 3, "containers": [{"name": "w"}]}}
    }
    state = runstate.RunState("0", "b", "p", 6, Plan("t", []), {"a": 5, "b": 6})
    runstate.save(tmp_path, state)
    counter = runstate.path(tmp_path).with_name("generation")
    done = execute.execute(launch.fence_intent(state, ["a"]), tmp_path, sessions(agents, "a"), 4)
    assert done.generation is None and not counter.exists()  # none handed out
    assert "deepracer-0" not in agents.stacks["a"]
    after = runstate.load(tmp_path)
    assert after is not None and after.fence == {"b": 6}


def test_the_desired_state_is_one_serialisation_from_specs_to_the_agent(tmp_path: Path) -> None:
    """What specs builds, typed as the agent reads it, sent as its document, parses back on
    the agent to the same state (and the same spec hashes, so nothing running is recreated);
    a container the agent would refuse is refused before any host is told."""
    from drfleet_agent import spec

    p = prepared(tmp_path, ("t", 16, True), ("a", 16, False))
    intent = launch.train_intent(p, CREDS, "0.0.0.0", True, False, False, False, False, {})
    for s, state in execute.docs_of(intent, 7, {"drfleet-run": "x"}):
        back = spec.parse(json.dumps(state.document()))
        assert back == state
        assert [c.spec_hash("0") for c in back.containers] == [
            c.spec_hash("0") for c in state.containers
        ]
        raw = training.desired(p, CREDS, 7).get(s.host)
        if raw and s.name == raw["stack"]:  # the dicts specs built hash the same, too
            theirs = spec.from_dict(specs_owned(raw, {"drfleet-run": "x"}))
            assert theirs.containers == state.containers
    with pytest.raises(DrfleetError, match=r"not one the agent takes: a: s.containers\[0\].name"):
        execute.typed("a", "s", [{"name": "bad name!", "image": "i"}])


def specs_owned(doc: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    from drfleet.runs import specs

    return dict(specs.owned({"h": doc}, labels)["h"])


def test_the_commands_results_are_typed_and_render_as_their_schemas_say() -> None:
    """train, --rebalance and stop return objects the command line renders: their --json
    documents hold to docs/schemas, and a host that could not be told makes them failed."""
    from drfleet.hosts.remote import Unreachable
    from drfleet.runs.results import HostResult, RebalanceResult, StopResult, TrainResult
    from tests.conftest import schema_ok

    fine = HostResult.of(False, None, None)
    gone = HostResult.of(True, Unreachable("timed out", where="h2", fix="start it"), None)
    assert gone.as_json(True) == {
        "ok": False,
        "unreachable": True,
        "reachable": False,
        "error": "h2: timed out",
        "fix": "start it",
    }
    train = TrainResult({"h1": fine, "h2": gone}, "0", Plan("h1", []), ["a"], False, 4)
    schema_ok("train", train.as_json())
    assert train.failed and list(train.lines()) == ["h1: ", "h2: h2: timed out"]
    moved = RebalanceResult({"h1": fine}, {"2": ("h2", "h1")}, ["h2"], Plan("h1", []), 5)
    schema_ok("train", moved.as_json())
    assert not moved.failed and next(moved.lines()) == "slot 2: h2 (unreachable) -> h1"
    stop = StopResult({"h1": fine}, "0")
    schema_ok("stop", stop.as_json())
    assert list(stop.lines()) == ["h1: stopped run 0"]


def test_evaluate_results_are_typed_and_render_as_their_schema_says() -> None:
    from drfleet.runs.results import EvalResults, EvalStarted, EvalStopped
    from tests.conftest import schema_ok

    rows = [
        {
            "trial": 1,
            "status": "Lap complete",
            "progress": 100.0,
            "lap_time": 9.5,
            "off_track": 0,
            "crashes": 0,
            "resets": 0,
        }
    ]
    summary = {"trials": 1, "laps_completed": 1, "best_lap_time": 9.5, "mean_progress": 100.0}
    started = EvalStarted("0", "p/eval_params.yaml", "m/evaluation/x.json", 1, "h2", ["w"])
    started.generation = 3
    schema_ok("evaluate", started.as_json())
    assert next(iter(started.lines())) == "warning: w"
    started.results = EvalResults("m/evaluation/x.json", rows, summary)
    schema_ok("evaluate", started.as_json())
    assert started.as_json()["rows"] == rows and started.as_json()["host"] == "h2"
    assert list(started.lines())[-1] == "1 of 1 laps completed, best 9.500s, mean progress 100.0%"
    schema_ok("evaluate", EvalStopped(["h2"]).as_json())
    assert list(EvalStopped([]).lines()) == ["no evaluation runs"]

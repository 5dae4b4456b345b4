"""The stand-in simapp fails where the real image would (its contract: DEEPRACER.md and
docs/simapp-contract.md). Run on this machine's dockerd, no test hosts needed."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from tests.conftest import REPO
from tests.testbed.images import ensure_standin

SHIM = str(REPO / "playbooks" / "files" / "taskset")


@pytest.fixture(scope="module")
def image() -> str:
    return ensure_standin()["cpu"]


@pytest.fixture()
def run(image: str) -> Iterator[object]:
    client = docker.from_env()
    made: list[str] = []

    def go(command: list[str] | None, **kw: object) -> tuple[int, str]:
        c = client.containers.run(image, command, detach=True, labels={"drfleet-test": "1"}, **kw)
        made.append(c.id)
        code = c.wait(timeout=120)["StatusCode"]
        return code, c.logs().decode(errors="replace")

    yield go
    for cid in made:
        client.containers.get(cid).remove(force=True)


def test_entrypoint_is_bash_c(image: str) -> None:
    attrs = docker.from_env().images.get(image).attrs["Config"]
    assert attrs["Entrypoint"] == ["/bin/bash", "-c"] and attrs["Cmd"] == ["bash"]
    assert attrs["WorkingDir"] == "/opt/ml/code"


def test_a_command_in_several_words_loses_its_arguments(run) -> None:  # type: ignore[no-untyped-def]
    # what drfleet sent before: rl_coach's bash runs a bare bash, which exits 0 at once
    code, out = run(["/bin/bash", "-c", "source /root/sagemaker-venv/bin/activate && echo started"])
    assert code == 0 and "started" not in out
    # and run.sh gets no arguments at all: `multi` became bash's $0
    code, out = run(["/opt/ml/code/run.sh", "multi", "distributed_training.launch.py"])
    assert "run.sh called with 0 arguments" in out


def test_start_py_needs_the_sagemaker_venv(run) -> None:  # type: ignore[no-untyped-def]
    code, out = run(["python3 /opt/ml/code/rl_coach/start.py"])
    assert code == 1 and "No module named 'sagemaker'" in out


def test_an_unknown_launch_file_fails(run) -> None:  # type: ignore[no-untyped-def]
    code, out = run(["/opt/ml/code/run.sh run no_such.launch.py"], environment=ENV)
    assert code != 0 and "was not found in the share directory" in out


ENV = {
    "APP_REGION": "us-east-1",
    "SAGEMAKER_SHARED_S3_BUCKET": "bucket",
    "SAGEMAKER_SHARED_S3_PREFIX": "p",
    "S3_YAML_NAME": "training_params.yaml",
    "WORLD_NAME": "reInvent2019_track",
    "S3_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing answers: the params cannot be read
    "AWS_ACCESS_KEY_ID": "x",
    "AWS_SECRET_ACCESS_KEY": "y",
}


def test_gazebo_pinned_to_cpus_the_host_lacks_does_not_start(run) -> None:  # type: ignore[no-untyped-def]
    """Worker 64 asks for CPUs 126,127 (empty_world.launch.py): taskset refuses, the launch
    fails. With drfleet's shim and DRFLEET_GAZEBO_CPUS it runs on CPU 0 instead."""
    env = {**ENV, "DOCKER_REPLICA_SLOT": "64"}
    code, out = run(["/opt/ml/code/run.sh multi distributed_training.launch.py"], environment=env)
    assert code != 0 and "gazebo_server]: process has died" in out, out
    assert "Starting as worker 63" in out
    code, out = run(
        ["/opt/ml/code/run.sh multi distributed_training.launch.py"],
        environment={**env, "DRFLEET_GAZEBO_CPUS": "0"},
        volumes={SHIM: {"bind": "/usr/local/bin/taskset", "mode": "ro"}},
    )
    assert "taskset -c 126,127 -> -c 0" in out, out
    assert "simulation server on CPUs [0]" in out, out
    assert "gazebo_server]: process has died" not in out


def test_rtf_override_edits_the_world_file_and_a_missing_world_fails(run) -> None:  # type: ignore[no-untyped-def]
    """run.sh writes RTF_OVERRIDE into the world's physics with xmlstarlet (set -e: a world the
    image lacks ends the container there); without an override, gz sim cannot load it."""
    code, out = run(["/opt/ml/code/run.sh run"], environment={**ENV, "RTF_OVERRIDE": "2.5"})
    assert "<real_time_factor>2.5</real_time_factor>" in out, out
    assert "<real_time_update_rate>2500.000000</real_time_update_rate>" in out, out
    assert "real_time_factor 2.5" in out, out  # the simulation server loads the edited world
    code, out = run(
        ["/opt/ml/code/run.sh run"],
        environment={**ENV, "RTF_OVERRIDE": "2.5", "WORLD_NAME": "no_such_track"},
    )
    assert code != 0 and "Started ros2 launch" not in out, out
    code, out = run(["/opt/ml/code/run.sh run"], environment={**ENV, "WORLD_NAME": "no_such_track"})
    assert code != 0 and "Unable to find or download file" in out, out
    assert "gazebo_server]: process has died" in out

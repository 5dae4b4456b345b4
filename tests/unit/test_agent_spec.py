import json
import os
from pathlib import Path

import pytest
from drfleet_agent.spec import SpecError, parse


def doc(*containers: dict, **top: object) -> str:
    return json.dumps(
        {"fleet": "f", "run_id": "0", "generation": 1, "containers": list(containers), **top}
    )


W = {"name": "w1", "image": "img:1"}


def test_architecture_example_is_accepted() -> None:
    state = parse(
        doc(
            {
                "name": "drfleet-robomaker-3",
                "image": "awsdeepracercommunity/deepracer-simapp:6.0.4-cpu",
                "command": ["/opt/ml/code/run.sh", "multi", "distributed_training.launch.py"],
                "env": {"DOCKER_REPLICA_SLOT": "3", "WORLD_NAME": "reInvent2019_track"},
                "networks": ["sagemaker-local"],
                "ports": {"8080/tcp": 18083},
                "mounts": [{"source": "/tmp/.X11-unix", "target": "/tmp/.X11-unix"}],
                "gpus": 0,
                "restart": "on-failure",
                "role": "robomaker",
            }
        )
    )
    c = state.containers[0]
    assert c.ports == {"8080/tcp": 18083} and c.env["DOCKER_REPLICA_SLOT"] == "3"
    assert "reInvent" not in repr(c)  # env values never reach a repr (logs)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("{", "not valid JSON at line 1 column 2"),
        ("[]", "must be a JSON object"),
        (doc({"name": "w1"}), "containers[0]: missing field 'image'"),
        (doc({**W, "volumes": []}), "containers[0]: unknown field 'volumes'"),
        (doc(W, W), "containers[1].name: duplicate name 'w1' (also containers[0])"),
        (doc({**W, "ports": {"8080/tcpx": 1}}), "'8080/tcpx' is not a container port"),
        (doc({**W, "ports": {"8080/tcp": 70000}}), "host port must be 1..65535"),
        (
            doc(
                {**W, "ports": {"8080": 9000}},
            ),
            None,
        ),
        (doc({**W, "publish_address": "0.0.0.0:80"}), "publish_address: must be an IP address"),
        (doc({**W, "publish_address": "::1"}), None),
        (doc({**W, "name": "w;rm -rf /"}), "containers[0].name: 'w;rm -rf /' is not valid"),
        (doc({**W, "restart": "sometimes"}), "restart: must be one of always, on-failure, never"),
        (doc({**W, "env": {"A B": "x"}}), "env key: 'A B' is not valid"),
        # a pattern ending in $ took a trailing newline
        (doc({**W, "env": {"A\n": "x"}}), "env key: 'A\\n' is not valid"),
        (doc({**W, "name": "w1\n"}), "containers[0].name: 'w1\\n' is not valid"),
        (doc({**W, "ports": {"8080/tcp\n": 1}}), "is not a container port"),
        (doc({**W, "labels": {"drfleet.name": "x"}}), "are the agent's own"),
        (doc({**W, "mounts": [{"source": "rel", "target": "/x"}]}), "must be absolute paths"),
        (
            doc(
                {**W, "ports": {"1/tcp": 9000}}, {"name": "w2", "image": "i", "ports": {"2": 9000}}
            ),
            "host port 9000 is also published by w1",
        ),
        (doc(W, generation=-1), "generation: must be a whole number >= 0"),
        (doc(W, extra=1), "desired state: unknown field 'extra'"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_invalid_states_are_refused_with_a_clear_message(
    text: str | bytes, expected: str | None
) -> None:
    if expected is None:
        parse(text)
        return
    with pytest.raises(SpecError) as exc:
        parse(text)
    assert expected in str(exc.value)


def test_spec_hash_follows_spec_and_run() -> None:
    a = parse(doc(W)).containers[0]
    b = parse(doc({**W, "env": {"X": "1"}})).containers[0]
    assert a.spec_hash("0") == parse(doc(W)).containers[0].spec_hash("0")
    assert a.spec_hash("0") != b.spec_hash("0")
    assert a.spec_hash("0") != a.spec_hash("1")


def test_a_bind_source_another_user_owns_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A path another local user created first (/tmp/sagemaker on the trainer, say) is not
    mounted into a container that runs as root with the docker socket."""
    import os

    from drfleet_agent.binds import unsafe_sources
    from drfleet_agent.spec import Mount

    mine = tmp_path / "sagemaker"
    mine.mkdir()
    me = os.stat(mine).st_uid
    assert unsafe_sources([Mount(str(mine), "/tmp/sagemaker")], {me}) == ""
    why = unsafe_sources([Mount(str(mine), "/tmp/sagemaker")], {me + 1})
    assert "belongs to uid" in why and "not root" in why and "chown it to root" in why
    # a source that cannot be checked is refused (it was let through to docker)
    why = unsafe_sources([Mount(str(tmp_path / "absent"), "/x")], {me})
    assert "cannot check" in why


@pytest.mark.skipif(os.geteuid() != 0, reason="makes files of other users")
def test_every_component_of_a_bind_source_is_checked_never_following_a_link_unchecked(
    tmp_path: Path,
) -> None:
    """The reproductions: a link another user owns pointing at /etc, a root-owned directory
    inside a user's directory; and what may stay (a root link such as /var/run, /tmp's
    sticky bit)."""
    from drfleet_agent.binds import unsafe_path

    user = 4321
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, user, user)
    (home / "etc").symlink_to("/etc")
    os.lchown(home / "etc", user, user)
    (home / "rootdir").mkdir()  # root's, but in a directory the user may rename things in
    safe = tmp_path / "safe"
    safe.mkdir()
    (safe / "link-to-etc").symlink_to("/etc")  # root's link to root's directory
    (safe / "link-to-home").symlink_to(home)
    (safe / "rel").symlink_to("../home/rootdir")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    (sticky / "mine").mkdir()
    grouped = tmp_path / "grouped"
    grouped.mkdir()
    os.chown(grouped, 0, user)
    grouped.chmod(0o775)

    def why(p: Path | str) -> str:
        return unsafe_path(str(p), {0}, {0})

    assert f"{home} belongs to uid {user}" in why(home / "etc")
    assert f"{home} belongs to uid {user}" in why(home / "rootdir")
    assert f"{home} belongs to uid {user}" in why(safe / "link-to-home" / "rootdir")
    assert f"{home} belongs to uid {user}" in why(safe / "rel")
    assert f"{home} belongs to uid {user}" in why(f"{safe}/../home/rootdir")
    assert "may be written by others" in why(shared)
    assert "may be written by others" in why(grouped)
    assert why(safe / "link-to-etc") == "" and why(sticky / "mine") == "" and why(sticky) == ""
    assert why("/var/run/../tmp") == "" and why("/") == ""
    assert unsafe_path(str(grouped), {0}, {0, user}) == ""  # a group of root's (docker's)


def _doc(stack: str, *names: str, run: str = "0", generation: int = 1, port: int = 0) -> str:
    containers = [
        {"name": n, "image": "img", **({"ports": {"8080/tcp": port}} if port and i == 0 else {})}
        for i, n in enumerate(names)
    ]
    return json.dumps(
        {"stack": stack, "run_id": run, "generation": generation, "containers": containers}
    )


def _apply(state_dir: Path, doc: str, *flags: str) -> tuple[int, str]:
    import io
    import sys

    from drfleet_agent import cli

    err, old_in, old_err, old_out = io.StringIO(), sys.stdin, sys.stderr, sys.stdout
    sys.stdin = io.TextIOWrapper(io.BytesIO(doc.encode()))
    sys.stderr, sys.stdout = err, io.StringIO()
    try:
        code = cli.main(["apply", "--state-dir", str(state_dir), *flags])
    finally:
        sys.stdin, sys.stderr, sys.stdout = old_in, old_err, old_out
    return code, err.getvalue()


def test_stacks_are_applied_alone_and_merged(tmp_path: Path) -> None:
    from drfleet_agent.store import StateDir

    assert _apply(tmp_path, _doc("deepracer-0", "a", "b", port=8081))[0] == 0
    assert _apply(tmp_path, _doc("deepracer-1", "c", run="1", generation=7, port=8181))[0] == 0
    merged = StateDir(tmp_path).read_desired()
    assert [c.name for c in merged.containers] == ["a", "b", "c"]
    assert merged.run_of("c") == "1" and merged.run_of("a") == "0"
    assert merged.stack_of("b") == "deepracer-0"
    # each stack keeps its own generation: run 1's 7 does not make run 0's 2 "older"
    assert _apply(tmp_path, _doc("deepracer-0", "a", generation=2))[0] == 0
    code, err = _apply(tmp_path, _doc("deepracer-0", "a", generation=1))
    assert code == 2 and "stack 'deepracer-0' holds generation 2" in err
    # emptying a stack removes it and leaves the other
    assert _apply(tmp_path, _doc("deepracer-0", generation=3))[0] == 0
    assert set(StateDir(tmp_path).read_stacks()) == {"deepracer-1"}
    # --clear: this stack alone
    assert _apply(tmp_path, _doc("s3", "m"), "--clear")[0] == 0
    assert set(StateDir(tmp_path).read_stacks()) == {"s3"}


def test_stacks_that_would_clash_are_refused_naming_both(tmp_path: Path) -> None:
    from drfleet_agent.store import StateDir

    assert _apply(tmp_path, _doc("deepracer-0", "a", port=8080))[0] == 0
    code, err = _apply(tmp_path, _doc("deepracer-1", "a", run="1"))
    assert code == 2 and "container 'a' belongs to stack 'deepracer-0'" in err
    code, err = _apply(tmp_path, _doc("deepracer-1", "z", run="1", port=8080))
    assert code == 2 and "host port 8080 of z is published by a of stack 'deepracer-0'" in err
    assert set(StateDir(tmp_path).read_stacks()) == {"deepracer-0"}  # nothing half-written


def test_an_agent_before_stacks_is_split_keeping_names_and_hashes(tmp_path: Path) -> None:
    """desired.json of drfleet <= 0.8 (minio, trainer, workers and an evaluation in one): read
    as the stacks the controller now sends, every spec and its run kept, so the containers
    that run keep their spec hash and are not recreated."""
    from drfleet_agent.store import StateDir

    legacy = {
        "fleet": "drfleet",
        "run_id": "0",
        "generation": 9,
        "containers": [
            {"name": "drfleet-minio", "image": "m", "role": "minio"},
            {"name": "drfleet-rlcoach", "image": "s", "role": "rl_coach"},
            {"name": "drfleet-robomaker-1", "image": "s", "role": "robomaker"},
            {"name": "drfleet-eval", "image": "s", "role": "evaluation"},
        ],
    }
    (tmp_path / "desired.json").write_text(json.dumps(legacy))
    before = parse(json.dumps(legacy))
    state = StateDir(tmp_path)
    stacks = state.read_stacks()
    assert {k: [c.name for c in v.containers] for k, v in stacks.items()} == {
        "s3": ["drfleet-minio"],
        "deepracer-0": ["drfleet-rlcoach", "drfleet-robomaker-1"],
        "deepracer-eval-0": ["drfleet-eval"],
    }
    merged = state.read_desired()
    for c in before.containers:
        assert merged.run_of(c.name) == "0"
        assert next(x for x in merged.containers if x.name == c.name).spec_hash("0") == (
            c.spec_hash(before.run_id)
        )
    assert not (tmp_path / "desired.json").exists() and merged.generation == 9


def test_a_host_with_no_stack_left_keeps_its_fleet(tmp_path: Path) -> None:
    """Its containers must still be removed, and the agent touches its own fleet's alone."""
    from drfleet_agent.store import StateDir

    doc = json.loads(_doc("deepracer-0", "a"))
    assert _apply(tmp_path, json.dumps({**doc, "fleet": "other"}))[0] == 0
    assert _apply(tmp_path, json.dumps({**doc, "fleet": "other", "containers": []}))[0] == 0
    left = StateDir(tmp_path).read_desired()
    assert left.stacks == {} and left.fleet == "other"


def test_the_image_ids_provisioning_recorded_are_read_strictly(tmp_path: Path) -> None:
    from drfleet_agent.store import StateDir

    state = StateDir(tmp_path)
    assert state.read_images() == {}
    good = "sha256:" + "a" * 64
    state.images.write_text(
        json.dumps({"simapp:1": good, "x:1": "latest", "y:1": good + "\n", "z:1": 3})
    )
    assert state.read_images() == {"simapp:1": good}
    state.images.write_text("[1]")
    assert state.read_images() == {}


def test_desired_prints_one_stack_as_the_controller_sent_it(tmp_path: Path) -> None:
    """`desired STACK`: the controller reads what a host holds through the agent (never its
    files): the stack's document, which parses back to the same state; exit 3 for none."""
    import contextlib
    import io

    from drfleet_agent import cli
    from drfleet_agent.store import StateDir

    assert _apply(tmp_path, _doc("s3", "m", port=9000))[0] == 0
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["desired", "s3", "--state-dir", str(tmp_path)]) == 0
    assert parse(out.getvalue()) == StateDir(tmp_path).read_stacks()["s3"]
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert cli.main(["desired", "deepracer-0", "--state-dir", str(tmp_path)]) == 3
    assert "no stack 'deepracer-0'" in err.getvalue()

import json

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

    from drfleet_agent.engine import foreign_sources
    from drfleet_agent.spec import Mount

    mine = tmp_path / "sagemaker"
    mine.mkdir()
    me = os.stat(mine).st_uid
    assert foreign_sources([Mount(str(mine), "/tmp/sagemaker")], {me}) == ""
    why = foreign_sources([Mount(str(mine), "/tmp/sagemaker")], {me + 1})
    assert f"belongs to uid {me}, not root" in why and "chown it to root" in why
    assert foreign_sources([Mount(str(tmp_path / "absent"), "/x")], {me + 1}) == ""

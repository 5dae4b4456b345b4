"""Container specs against what DRfC runs for the same files (pure).

Every expectation here is written from deepracer-for-cloud at 2eb1a1f: `scripts/training/
start.sh` (ROBOMAKER_COMMAND, DR_CURRENT_PARAMS_FILE, MULTI_CONFIG), `bin/activate.sh`
(DR_MINIO_URL, which compose files apply) and `docker/docker-compose-training.yml`,
`-endpoint.yml`, `-keys.yml`, `-mount.yml`, `-local-xorg.yml`. The image is the simapp's, whose
Dockerfile ends with ENTRYPOINT ["/bin/bash", "-c"] and CMD ["bash"]."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from drfleet.drfc import checks, config, params
from drfleet.errors import ConfigError
from drfleet.runs.placement import VIDEO_BASE, Capacity, place
from drfleet.runs.specs import build, evaluation, gazebo_cpus, minio_stack
from tests.unit.test_training import drfc

ENTRYPOINT = ["/bin/bash", "-c"]
CREDS = {"access_key": "AK", "secret_key": "SK"}
SYSTEM = """\
DR_CLOUD=local
DR_AWS_APP_REGION=eu-west-1
DR_LOCAL_S3_BUCKET=bucket
DR_GUI_ENABLE=False
DR_KINESIS_STREAM_NAME=
DR_CAMERA_MAIN_ENABLE=True
DR_CAMERA_SUB_ENABLE=False
DR_CAMERA_KVS_ENABLE=True
DR_SIMAPP_SOURCE=awsdeepracercommunity/deepracer-simapp
DR_SIMAPP_VERSION=6.0.4-cpu
DR_WORKERS={workers}
"""
RUN = """\
DR_RUN_ID=0
DR_WORLD_NAME=reInvent2019_track
DR_TRAIN_MULTI_CONFIG={multi}
DR_LOCAL_S3_MODEL_PREFIX=rl-deepracer-sagemaker
DR_LOCAL_S3_PRETRAINED=False
DR_LOCAL_S3_PRETRAINED_PREFIX=rl-sagemaker-pretrained
DR_LOCAL_S3_PRETRAINED_CHECKPOINT=last
DR_LOCAL_S3_CUSTOM_FILES_PREFIX=custom_files
DR_LOCAL_S3_TRAINING_PARAMS_FILE=training_params.yaml
DR_LOCAL_S3_MODEL_METADATA_KEY=$DR_LOCAL_S3_CUSTOM_FILES_PREFIX/model_metadata.json
DR_LOCAL_S3_HYPERPARAMETERS_KEY=$DR_LOCAL_S3_CUSTOM_FILES_PREFIX/hyperparameters.json
"""


def process(spec: dict[str, Any]) -> list[str]:
    """What the container runs: the image's entrypoint, then the spec's command."""
    return [*ENTRYPOINT, *spec["command"]]


def script_argv(spec: dict[str, Any]) -> list[str]:
    """`bash -c SCRIPT [$0 [ARGS...]]`: the words of SCRIPT. Any word after SCRIPT would be
    bash's $0 and never reach the script, so there must be none."""
    argv = process(spec)
    assert argv[:2] == ["/bin/bash", "-c"] and len(argv) == 3, argv
    return shlex.split(argv[2])


def setup(
    tmp_path: Path,
    workers: int,
    *,
    multi: bool = False,
    system_extra: str = "",
    run_extra: str = "",
    hosts: list[Capacity] | None = None,
) -> tuple[config.TrainingConfig, dict[str, Any]]:
    d = drfc(
        tmp_path,
        system=SYSTEM.format(workers=workers) + system_extra,
        run=RUN.format(multi="True" if multi else "False") + run_extra,
        episodes=max(workers, 6),
        workers={2: "DR_WORLD_NAME=Monaco\n", 3: "DR_WORLD_NAME=Bowtie_track\n"} if multi else {},
    )
    cfg = config.load(d, environ={})
    files = params.files(cfg, now=0)
    caps = hosts or [Capacity(host="t", vcpus=16, trainer=True)]
    names = list(files) if cfg.multi_config else list(files) * workers
    worlds = [files[n]["WORLD_NAME"] for n in names]
    base = VIDEO_BASE + checks.run(cfg).port_offset  # as training.prepare places them
    plan = place(workers, caps, worlds, checks.shares(cfg.episodes, workers), names, base)
    return cfg, build(plan, cfg, {c.host: c for c in caps}, CREDS, files, generation=1)


def containers(docs: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [c for d in docs.values() for c in d["containers"] if c["role"] == role]


# docker-compose-training.yml (rl_coach) + -endpoint.yml + -keys.yml, for SYSTEM and RUN
RL_COACH_ENV = {
    "RUN_ID": "0",
    "AWS_REGION": "eu-west-1",
    "SAGEMAKER_IMAGE": "awsdeepracercommunity/deepracer-simapp:6.0.4-cpu",
    "PRETRAINED": "False",
    "PRETRAINED_S3_PREFIX": "rl-sagemaker-pretrained",
    "PRETRAINED_S3_BUCKET": "bucket",
    "PRETRAINED_CHECKPOINT": "last",
    "MODEL_S3_PREFIX": "rl-deepracer-sagemaker",
    "MODEL_S3_BUCKET": "bucket",
    "HYPERPARAMETER_FILE_S3_KEY": "custom_files/hyperparameters.json",
    "MODELMETADATA_FILE_S3_KEY": "custom_files/model_metadata.json",
    "CUDA_VISIBLE_DEVICES": "",  # ${DR_SAGEMAKER_CUDA_DEVICES:-}
    "MAX_MEMORY_STEPS": "",  # ${DR_TRAIN_MAX_STEPS_PER_ITERATION:-}
    "TELEGRAF_HOST": "",
    "TELEGRAF_PORT": "",
    "S3_ENDPOINT_URL": "http://minio:9000",  # DR_MINIO_URL for DR_CLOUD=local
    "AWS_ACCESS_KEY_ID": "AK",
    "AWS_SECRET_ACCESS_KEY": "SK",
}


def robomaker_env(slot: int, world: str, yaml_name: str) -> dict[str, str]:
    """docker-compose-training.yml (robomaker) + -endpoint.yml + -keys.yml, with drfleet's
    DOCKER_REPLICA_SLOT (DRfC's swarm gives {{.Task.Slot}}) and the drfleet taskset CPUs."""
    return {
        "WORLD_NAME": world,
        "SAGEMAKER_SHARED_S3_PREFIX": "rl-deepracer-sagemaker",
        "SAGEMAKER_SHARED_S3_BUCKET": "bucket",
        "APP_REGION": "eu-west-1",
        "S3_YAML_NAME": yaml_name,
        "KINESIS_VIDEO_STREAM_NAME": "",
        "ENABLE_KINESIS": "True",  # DR_CAMERA_KVS_ENABLE
        "ENABLE_GUI": "False",
        "CUDA_VISIBLE_DEVICES": "",
        "RTF_OVERRIDE": "",  # ${DR_TRAIN_RTF:-}
        "ROS_MASTER_URI": "http://localhost:11311/",
        "ROS_IP": "127.0.0.1",
        "GAZEBO_ARGS": "",
        "GAZEBO_RENDER_ENGINE": "ogre2",
        "TELEGRAF_HOST": "",
        "TELEGRAF_PORT": "",
        "S3_ENDPOINT_URL": "http://minio:9000",
        "AWS_ACCESS_KEY_ID": "AK",
        "AWS_SECRET_ACCESS_KEY": "SK",
        "DOCKER_REPLICA_SLOT": str(slot),
        "DRFLEET_GAZEBO_CPUS": f"{2 * (slot - 1)},{2 * (slot - 1) + 1}",
    }


def test_rl_coach_runs_start_py_in_the_sagemaker_venv(tmp_path: Path) -> None:
    _, docs = setup(tmp_path, 1)
    (rc,) = containers(docs, "rl_coach")
    assert script_argv(rc)[:2] == ["source", "/root/sagemaker-venv/bin/activate"]
    assert process(rc) == [
        "/bin/bash",
        "-c",
        "source /root/sagemaker-venv/bin/activate && python3 /opt/ml/code/rl_coach/start.py",
    ]
    assert rc["working_dir"] == "/opt/ml/code/"
    assert rc["env"] == RL_COACH_ENV
    assert {"source": "/tmp/sagemaker", "target": "/tmp/sagemaker"} in rc["mounts"]
    assert {"source": "/var/run/docker.sock", "target": "/var/run/docker.sock"} in rc["mounts"]
    assert "init" not in rc  # the compose file gives init only to the robomaker


def test_single_worker_runs_run_sh_in_run_mode(tmp_path: Path) -> None:
    _, docs = setup(tmp_path, 1)
    (rm,) = containers(docs, "robomaker")
    assert script_argv(rm) == ["/opt/ml/code/run.sh", "run", "distributed_training.launch.py"]
    assert rm["env"] == robomaker_env(1, "reInvent2019_track", "training_params.yaml")
    assert "MULTI_CONFIG" not in rm["env"]  # start.sh exports it only for multi-config
    assert rm["init"] is True
    assert rm["ports"] == {"8080/tcp": 8080}  # no VNC without DR_GUI_ENABLE


def test_ports_listen_on_loopback_unless_the_inventory_opens_them(tmp_path: Path) -> None:
    """DRfC publishes minio and video on every address; drfleet on the host's 127.0.0.1 (the
    controller and the viewer come through SSH), or where publish_address says."""
    hosts = [
        Capacity(host="t", vcpus=16, trainer=True),
        Capacity(host="w", vcpus=8, publish_address="0.0.0.0"),
    ]
    _, docs = setup(tmp_path, 3, hosts=hosts)
    for d in docs.values():
        for c in d["containers"]:
            if c.get("ports"):
                want = "0.0.0.0" if c in docs.get("w", {}).get("containers", []) else "127.0.0.1"
                assert c["publish_address"] == want, c["name"]
    assert {c["role"] for c in docs["t"]["containers"] if c.get("ports")} == {"robomaker"}
    assert docs["w"]["containers"], "a worker landed on w"
    cfg = config.load(tmp_path, environ={})
    (minio,) = minio_stack(cfg, CREDS, "127.0.0.1", 1)["containers"]
    assert minio["publish_address"] == "127.0.0.1" and minio["ports"] == {"9000/tcp": 9000}


def test_three_workers_single_config(tmp_path: Path) -> None:
    _, docs = setup(tmp_path, 3)
    robo = sorted(containers(docs, "robomaker"), key=lambda c: c["name"])
    for slot, rm in enumerate(robo, 1):
        assert script_argv(rm) == [
            "/opt/ml/code/run.sh",
            "multi",
            "distributed_training.launch.py",
        ]
        assert rm["env"] == robomaker_env(slot, "reInvent2019_track", "training_params.yaml")


def test_multi_config_every_worker_gets_the_same_multi_config(tmp_path: Path) -> None:
    _, docs = setup(tmp_path, 3, multi=True)
    robo = sorted(containers(docs, "robomaker"), key=lambda c: c["name"])
    expected_mc = {
        "multi_config": [
            {"config_file": "training_params_1.yaml", "world_name": "reInvent2019_track"},
            {"config_file": "training_params_2.yaml", "world_name": "Monaco"},
            {"config_file": "training_params_3.yaml", "world_name": "Bowtie_track"},
        ]
    }
    for slot, rm in enumerate(robo, 1):
        env = dict(rm["env"])
        assert json.loads(env.pop("MULTI_CONFIG")) == expected_mc
        entry = expected_mc["multi_config"][slot - 1]
        # what run.sh multi would take from MULTI_CONFIG with ROLLOUT_IDX = slot - 1
        assert env == robomaker_env(slot, entry["world_name"], entry["config_file"])


def test_settings_reach_the_containers_under_drfc_names(tmp_path: Path) -> None:
    _, docs = setup(
        tmp_path,
        2,
        system_extra="DR_TELEGRAF_HOST=telegraf\nDR_TELEGRAF_PORT=8092\nDR_CAMERA_KVS_ENABLE=False\n"
        "DR_GUI_ENABLE=True\nDR_KINESIS_STREAM_NAME=my-stream\n",
        run_extra="DR_TRAIN_RTF=1.5\nDR_TRAIN_MAX_STEPS_PER_ITERATION=5000\n"
        "DR_GAZEBO_RENDER_ENGINE=ogre\n",
    )
    (rc,) = containers(docs, "rl_coach")
    assert rc["env"]["MAX_MEMORY_STEPS"] == "5000"
    assert (rc["env"]["TELEGRAF_HOST"], rc["env"]["TELEGRAF_PORT"]) == ("telegraf", "8092")
    rm = next(c for c in containers(docs, "robomaker") if c["name"].endswith("-2"))
    assert rm["env"]["RTF_OVERRIDE"] == "1.5"
    assert rm["env"]["ENABLE_KINESIS"] == "False" and rm["env"]["ENABLE_GUI"] == "True"
    assert rm["env"]["KINESIS_VIDEO_STREAM_NAME"] == "my-stream"
    assert rm["env"]["GAZEBO_RENDER_ENGINE"] == "ogre"
    assert (rm["env"]["TELEGRAF_HOST"], rm["env"]["TELEGRAF_PORT"]) == ("telegraf", "8092")
    assert rm["ports"] == {"8080/tcp": 8081, "5900/tcp": 5901}
    # no kvs_stream topic without ENABLE_KINESIS: the viewer falls back to the main camera
    assert rm["labels"]["drfleet-topics"] == "main_camera,camera"


def test_gpu_host_gets_the_gpu_flavour_and_cuda_devices_only_when_set(tmp_path: Path) -> None:
    hosts = [
        Capacity(host="t", vcpus=16, trainer=True, gpus=1),
        Capacity(host="g", vcpus=8, gpus=1),
    ]
    _, docs = setup(tmp_path, 2, hosts=hosts)
    (rc,) = containers(docs, "rl_coach")
    assert rc["image"].endswith(":6.0.4-gpu") and rc["env"]["SAGEMAKER_IMAGE"] == rc["image"]
    assert rc["env"]["CUDA_VISIBLE_DEVICES"] == ""
    for rm in containers(docs, "robomaker"):
        assert rm["image"].endswith(":6.0.4-gpu") and rm["gpus"] == -1
        assert rm["env"]["CUDA_VISIBLE_DEVICES"] == ""
    _, docs = setup(
        tmp_path,
        2,
        hosts=hosts,
        system_extra="DR_SAGEMAKER_CUDA_DEVICES=0\nDR_ROBOMAKER_CUDA_DEVICES=1\n",
    )
    assert containers(docs, "rl_coach")[0]["env"]["CUDA_VISIBLE_DEVICES"] == "0"
    assert {c["env"]["CUDA_VISIBLE_DEVICES"] for c in containers(docs, "robomaker")} == {"1"}


def test_host_x_on_opengl_hosts(tmp_path: Path) -> None:
    hosts = [
        Capacity(host="t", vcpus=16, trainer=True),
        Capacity(host="gl", vcpus=8, opengl=True, worker_vcpus=2),
    ]
    _, docs = setup(tmp_path, 2, system_extra="DR_HOST_X=True\nDR_DISPLAY=:99\n", hosts=hosts)
    gl = [c for c in docs["gl"]["containers"] if c["role"] == "robomaker"]
    assert gl
    for rm in gl:  # docker-compose-local-xorg.yml
        for k, v in {
            "DISPLAY": ":99",
            "USE_EXTERNAL_X": "True",
            "XAUTHORITY": "/root/.Xauthority",
            "QT_X11_NO_MITSHM": "1",
            "NVIDIA_DRIVER_CAPABILITIES": "all",
        }.items():
            assert rm["env"][k] == v
        assert {"source": "/tmp/.X11-unix", "target": "/tmp/.X11-unix"} in rm["mounts"]
        assert any(m["target"] == "/root/.Xauthority" for m in rm["mounts"])
    plain = [c for c in docs["t"]["containers"] if c["role"] == "robomaker"]
    assert all("DISPLAY" not in c["env"] for c in plain)


def test_mount_logs_as_docker_compose_mount(tmp_path: Path) -> None:
    _, docs = setup(tmp_path, 1, system_extra="DR_ROBOMAKER_MOUNT_LOGS=True\n")
    (rm,) = containers(docs, "robomaker")
    assert {
        "source": "/var/lib/drfleet/logs/robomaker/rl-deepracer-sagemaker",
        "target": "/root/.ros/log",
    } in rm["mounts"]


def test_params_carry_endpoint_and_kvs_overlay(tmp_path: Path) -> None:
    cfg, _ = setup(tmp_path, 3, multi=True, system_extra="DR_ENABLE_EXTRA_KVS_OVERLAY=True\n")
    for p in params.files(cfg, now=0).values():
        assert p["S3_ENDPOINT_URL"] == "http://minio:9000"
        assert p["ENABLE_EXTRA_KVS_OVERLAY"] == "True"


def test_object_avoidance_and_head_to_bot_params(tmp_path: Path) -> None:
    cfg, _ = setup(
        tmp_path,
        1,
        run_extra="DR_RACE_TYPE=OBJECT_AVOIDANCE\nDR_OA_NUMBER_OF_OBSTACLES=3\n",
    )
    (p,) = params.files(cfg, now=0).values()
    # prepare-config.py: the OA keys, with its defaults for those run.env leaves out
    assert {k: p[k] for k in p if "OBSTACLE" in k} == {
        "NUMBER_OF_OBSTACLES": "3",
        "MIN_DISTANCE_BETWEEN_OBSTACLES": "2.0",
        "RANDOMIZE_OBSTACLE_LOCATIONS": "True",
        "IS_OBSTACLE_BOT_CAR": "false",
        "OBSTACLE_TYPE": "box_obstacle",
    }
    cfg, _ = setup(tmp_path, 1, run_extra="DR_RACE_TYPE=HEAD_TO_BOT\nDR_H2B_BOT_CAR_PENALTY=3.0\n")
    (p,) = params.files(cfg, now=0).values()
    assert p["PENALTY_SECONDS"] == "3.0" and p["NUMBER_OF_BOT_CARS"] == "0"
    assert "NUMBER_OF_OBSTACLES" not in p


def test_gazebo_cpus_stay_on_each_workers_host() -> None:
    """10 workers over three 16-vCPU hosts: the simapp would pin worker idx 9 to CPUs 18,19,
    which no host has. drfleet gives each host's workers disjoint pairs of its own CPUs."""
    hosts = [Capacity(host="t", vcpus=16, trainer=True)] + [
        Capacity(host=f"w{i}", vcpus=16) for i in (1, 2)
    ]
    plan = place(10, hosts, ["x"] * 10, [1] * 10, ["p"] * 10)
    cpus = gazebo_cpus(plan, {c.host: c for c in hosts})
    by_host: dict[str, list[set[int]]] = {}
    for w in plan.workers:
        pair = {int(c) for c in cpus[w.slot].split(",")}
        assert pair <= set(range(16)), (w.slot, pair)
        by_host.setdefault(w.host, []).append(pair)
    for pairs in by_host.values():
        assert all(a.isdisjoint(b) for i, a in enumerate(pairs) for b in pairs[i + 1 :])
    assert any(2 * (w.slot - 1) + 1 >= 16 for w in plan.workers)  # the case that matters


def test_unsupported_unknown_and_legacy_settings_are_named(tmp_path: Path) -> None:
    cfg, _ = setup(
        tmp_path,
        1,
        system_extra="DR_CLOUD_WATCH_ENABLE=True\nDR_KINESIS_STREAM_ENABLE=True\n"
        "DR_WORKER=3\nDR_LOCAL_SECRET_ACCESS_KEY=hunter2\nDR_ANALYSIS_IMAGE=cpu\n",
    )
    text = "\n".join(cfg.warnings)
    assert "DR_CLOUD_WATCH_ENABLE=True is not supported" in text
    assert "DR_KINESIS_STREAM_ENABLE is an old name" in text and "DR_CAMERA_KVS_ENABLE" in text
    assert "DR_WORKER is not a DRfC setting" in text and "did you mean DR_WORKERS" in text
    assert "DR_LOCAL_SECRET_ACCESS_KEY is computed" in text and "hunter2" not in text
    assert "system.env:" in text  # each names its file and line
    assert "DR_ANALYSIS_IMAGE" not in text  # not a training setting, DRfC's train ignores it


def test_experiment_name_from_the_environment_wins(tmp_path: Path) -> None:
    d = drfc(tmp_path, system=SYSTEM.format(workers=1), run=RUN.format(multi="False"))
    exp = d / "experiments" / "e1"
    (exp / "custom_files").mkdir(parents=True)
    for f in (d / "custom_files").iterdir():
        (exp / "custom_files" / f.name).write_bytes(f.read_bytes())
    (exp / "run.env").write_text(RUN.format(multi="False").replace("reInvent2019", "Monaco"))
    assert config.load(d, environ={}).get("DR_WORLD_NAME") == "reInvent2019_track"
    cfg = config.load(d, environ={"DR_EXPERIMENT_NAME": "e1"})
    assert cfg.base_dir == exp and cfg.get("DR_WORLD_NAME") == "Monaco_track"
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(d, environ={"DR_EXPERIMENT_NAME": "nope"})


def on_cloud(
    tmp_path: Path, cloud: str, workers: int, creds: dict[str, str], extra: str = ""
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The hosts' desired states and the params files of a one-host run with DR_CLOUD=cloud."""
    cfg, _ = setup(tmp_path, workers, system_extra=extra)
    system = (cfg.env_dir / "system.env").read_text()
    (cfg.env_dir / "system.env").write_text(system.replace("DR_CLOUD=local", f"DR_CLOUD={cloud}"))
    cfg = config.load(cfg.env_dir, environ={})
    checks.check(cfg)
    files = params.files(cfg, now=0)
    caps = [Capacity(host="t", vcpus=16, trainer=True)]
    names = list(files) * workers
    worlds = [files[n]["WORLD_NAME"] for n in names]
    base = VIDEO_BASE + checks.run(cfg).port_offset  # as training.prepare places them
    plan = place(workers, caps, worlds, checks.shares(cfg.episodes, workers), names, base)
    return build(plan, cfg, {c.host: c for c in caps}, creds, files, generation=1), files


def test_a_cloud_drfc_does_not_know_is_refused_up_front(tmp_path: Path) -> None:
    d = drfc(
        tmp_path,
        system=SYSTEM.format(workers=1).replace("DR_CLOUD=local", "DR_CLOUD=gcp"),
        run=RUN.format(multi="False"),
    )
    with pytest.raises(ConfigError, match="DR_CLOUD=gcp is not one DRfC knows") as err:
        checks.check(config.load(d, environ={}))
    assert "system.env:1" in str(err.value) and "local, remote or aws" in str(err.value)


@pytest.mark.parametrize("creds", [CREDS, {}], ids=["profile keys", "instance role"])
def test_aws_storage_gives_what_drfcs_aws_and_keys_compose_files_give(
    tmp_path: Path, creds: dict[str, str]
) -> None:
    """DR_CLOUD=aws: docker-compose-aws.yml (the metadata timeouts), -keys.yml only with the
    profile's keys, no S3_ENDPOINT_URL (activate.sh sets no DR_MINIO_URL) and no minio."""
    docs, files = on_cloud(tmp_path, "aws", 2, creds)
    assert containers(docs, "minio") == []
    aws = {"AWS_METADATA_SERVICE_TIMEOUT": "3", "AWS_METADATA_SERVICE_NUM_ATTEMPTS": "5"}
    keys = {"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK"} if creds else {}
    compose = ("S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    rl_coach = {k: v for k, v in RL_COACH_ENV.items() if k not in compose}  # training.yml's
    (rc,) = containers(docs, "rl_coach")
    assert rc["env"] == {**rl_coach, **aws, **keys}
    for w in containers(docs, "robomaker"):
        assert "S3_ENDPOINT_URL" not in w["env"]
        assert {k: w["env"].get(k) for k in aws} == aws
        assert ("AWS_ACCESS_KEY_ID" in w["env"]) == bool(creds)
    assert "S3_ENDPOINT_URL" not in files["training_params.yaml"]


def test_aws_credentials_are_the_profiles_keys_or_the_hosts_roles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """activate.sh: keys of the profile's own go to the containers; credentials of an assumed
    role (here a role_arn profile; on EC2 the instance role) do not: every host's role is used."""
    from drfleet.errors import DrfleetError
    from drfleet.runs import storage

    (tmp_path / "config").write_text(
        "[profile deepracer]\nregion = eu-west-1\n"
        "[profile assumed]\nrole_arn = arn:aws:iam::123456789012:role/dr\n"
        "source_profile = deepracer\n"
    )
    (tmp_path / "credentials").write_text(
        "[deepracer]\naws_access_key_id = AKIDEEP\naws_secret_access_key = deep-secret\n"
        "[session]\naws_access_key_id = ASIATEMP\naws_secret_access_key = s\n"
        "aws_session_token = t\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    assert storage.aws_keys("deepracer") == {"access_key": "AKIDEEP", "secret_key": "deep-secret"}
    assert storage.aws_keys("assumed") == {}
    assert storage.aws_keys("session") == {}
    with pytest.raises(DrfleetError, match="DR_LOCAL_S3_PROFILE=minio: no such AWS profile"):
        storage.aws_keys("minio")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("", "it is not set"),
        ("ftp://nas:9000", "is not an http(s)://host[:port] URL"),
        ("http://nas:9000/bucket", "holds more than scheme, host and port"),
        ("http://nas:99999", "is not a URL"),
        ("http://nas:9000;reboot", "is not a URL"),
    ],
)
def test_remote_needs_a_plain_url(tmp_path: Path, url: str, why: str) -> None:
    system = SYSTEM.format(workers=1).replace("DR_CLOUD=local", "DR_CLOUD=remote")
    d = drfc(
        tmp_path, system=system + f"DR_REMOTE_MINIO_URL={url}\n", run=RUN.format(multi="False")
    )
    with pytest.raises(ConfigError, match="DR_CLOUD=remote needs DR_REMOTE_MINIO_URL") as err:
        checks.check(config.load(d, environ={}))
    assert why in str(err.value)


def test_remote_storage_starts_no_minio_and_gives_its_url(tmp_path: Path) -> None:
    """DR_CLOUD=remote: docker-compose-endpoint.yml with DR_MINIO_URL=DR_REMOTE_MINIO_URL and
    -keys.yml with the profile's keys; no minio (DR_MINIO_COMPOSE_FILE is empty)."""
    docs, files = on_cloud(
        tmp_path, "remote", 3, CREDS, "DR_REMOTE_MINIO_URL=http://nas.example:9000\n"
    )
    assert containers(docs, "minio") == []
    (rc,) = containers(docs, "rl_coach")
    assert rc["env"] == {**RL_COACH_ENV, "S3_ENDPOINT_URL": "http://nas.example:9000"}
    for w in containers(docs, "robomaker"):
        assert w["env"]["S3_ENDPOINT_URL"] == "http://nas.example:9000"
        assert (w["env"]["AWS_ACCESS_KEY_ID"], w["env"]["AWS_SECRET_ACCESS_KEY"]) == ("AK", "SK")
    assert files["training_params.yaml"]["S3_ENDPOINT_URL"] == "http://nas.example:9000"


def test_init_writes_drfc_template_keys_and_defaults(tmp_path: Path) -> None:
    from drfleet.drfc import settings
    from drfleet.runs import training

    training.init(tmp_path)
    cfg = config.load(tmp_path, environ={})
    assert len(cfg.values) >= 80
    for key, value in cfg.values.items():
        assert settings.default(key) == value, key
    assert cfg.warnings == []


def test_simapp_and_scripts_dirs_are_shipped_by_content(tmp_path: Path) -> None:
    from drfleet.runs import training

    d = drfc(tmp_path, system=SYSTEM.format(workers=1), run=RUN.format(multi="False"))
    (d / "scripts").mkdir()
    (d / "scripts" / "alter_environment.sh").write_text("echo altered\n")
    with (d / "system.env").open("a") as fh:
        fh.write("DR_ROBOMAKER_MOUNT_SCRIPTS_DIR=scripts\n")
    cfg = config.load(d, environ={})
    staged = training.staged_dirs(cfg)
    st = staged["DR_ROBOMAKER_MOUNT_SCRIPTS_DIR"]
    assert st.host_path == f"/var/lib/drfleet/files/{st.digest}"
    assert training.staged_dirs(cfg)["DR_ROBOMAKER_MOUNT_SCRIPTS_DIR"].digest == st.digest
    (d / "scripts" / "alter_environment.sh").write_text("echo changed\n")
    assert training.staged_dirs(cfg)["DR_ROBOMAKER_MOUNT_SCRIPTS_DIR"].digest != st.digest
    files = params.files(cfg, now=0)
    caps = [Capacity(host="t", vcpus=16, trainer=True)]
    plan = place(1, caps, ["w"], [6], list(files))
    docs = build(
        plan, cfg, {"t": caps[0]}, CREDS, files, 1, {"DR_ROBOMAKER_MOUNT_SCRIPTS_DIR": "/x"}
    )
    (rm,) = containers(docs, "robomaker")
    assert {"source": "/x", "target": "/scripts"} in rm["mounts"]
    with (d / "system.env").open("a") as fh:
        fh.write("DR_ROBOMAKER_MOUNT_SIMAPP_DIR=/nonexistent/simapp\n")
    with pytest.raises(ConfigError, match="is not a directory") as err:
        training.staged_dirs(config.load(d, environ={}))
    assert "system.env:" in str(err.value)


def test_a_run_id_names_the_runs_stacks_containers_and_ports(tmp_path: Path) -> None:
    """DR_RUN_ID=3 (DRfC's multi_run.md): the stack deepracer-3 as DRfC's swarm stack, every
    name with the run in it, every port 300 up (activate.sh adds DR_RUN_ID to its ports), and
    RUN_ID=3 for rl_coach as DRfC's compose passes it; minio stays one, the fleet's."""
    hosts = [Capacity(host="t", vcpus=16, trainer=True), Capacity(host="w", vcpus=8)]
    cfg, docs = setup(
        tmp_path, 3, hosts=hosts, run_extra="DR_RUN_ID=3\n", system_extra="DR_GUI_ENABLE=True\n"
    )
    assert {d["stack"] for d in docs.values()} == {"deepracer-3"}
    assert {d["run_id"] for d in docs.values()} == {"3"}
    names = sorted(c["name"] for d in docs.values() for c in d["containers"])
    assert names == [
        "drfleet-3-rlcoach",
        "drfleet-3-robomaker-1",
        "drfleet-3-robomaker-2",
        "drfleet-3-robomaker-3",
    ]
    (rl,) = containers(docs, "rl_coach")
    assert rl["env"]["RUN_ID"] == "3"
    robo = {c["name"]: c for c in containers(docs, "robomaker")}
    assert robo["drfleet-3-robomaker-2"]["ports"] == {"8080/tcp": 8381, "5900/tcp": 6201}
    ev = evaluation(cfg, hosts[1], CREDS, "eval_params.yaml", "0,1")
    assert ev["name"] == "drfleet-3-eval" and ev["ports"] == {"8080/tcp": 8378, "5900/tcp": 6199}
    assert minio_stack(cfg, CREDS, "127.0.0.1", 1)["stack"] == "s3"


@pytest.mark.parametrize("value", ["x", "-1", "100", "1.5", "²", "١"])  # ²: isdigit, int() fails
def test_a_run_id_that_is_no_small_number_is_refused_naming_the_file(
    tmp_path: Path, value: str
) -> None:
    with pytest.raises(ConfigError, match=f"DR_RUN_ID='{value}' is not a run number") as err:
        setup(tmp_path, 1, run_extra=f"DR_RUN_ID={value}\n")
    assert "run.env" in err.value.message


def test_settings_drfleet_treats_its_own_way_are_said(tmp_path: Path) -> None:
    """DR_DOCKER_STYLE=compose is named with what drfleet does instead; DRfC's template sets
    DR_EVAL_COLLISION_PENALTY, which its evaluation never reads (prepare-config.py reads
    DR_COLLISION_PENALTY): a changed value is named with the line to write."""
    from drfleet.drfc import eval_params, settings

    for d in ("a", "b", "c"):
        (tmp_path / d).mkdir()
    cfg, _ = setup(tmp_path / "a", 1, system_extra="DR_DOCKER_STYLE=compose\n")
    said = settings.warnings(cfg.values, {"DR_DOCKER_STYLE": "system.env:30"})
    assert any(
        w.startswith("system.env:30: DR_DOCKER_STYLE=compose: drfleet's agent runs plain")
        and "no compose mode" in w
        for w in said
    ), said
    cfg, _ = setup(tmp_path / "b", 1, run_extra="DR_EVAL_COLLISION_PENALTY=10.0\n")
    (warning,) = eval_params.warnings(cfg)
    assert "DR_EVAL_COLLISION_PENALTY=10.0 has no effect" in warning
    assert "set DR_COLLISION_PENALTY=10.0" in warning and "run.env:" in warning
    assert eval_params.params(cfg, 0)["COLLISION_PENALTY"] == "5.0"  # as DRfC's would
    cfg, _ = setup(tmp_path / "c", 1, run_extra="DR_COLLISION_PENALTY=10.0\n")
    assert eval_params.warnings(cfg) == []
    assert eval_params.params(cfg, 0)["COLLISION_PENALTY"] == "10.0"


def test_the_viewer_port_comes_from_dr_webviewer_port(tmp_path: Path) -> None:
    from drfleet.errors import ConfigError
    from drfleet.runs.training import webviewer_port

    assert webviewer_port(tmp_path) == 8100  # no system.env: DRfC's default
    (tmp_path / "system.env").write_text("DR_WEBVIEWER_PORT=8200\n")
    assert webviewer_port(tmp_path) == 8200
    (tmp_path / "system.env").write_text("DR_WEBVIEWER_PORT=http\n")
    with pytest.raises(ConfigError, match=r"system\.env:1: DR_WEBVIEWER_PORT='http' is not a port"):
        webviewer_port(tmp_path)

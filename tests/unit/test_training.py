"""DRfC configuration, checks, training params, planner and container specs (all pure)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from drfleet.drfc import checks, config, params
from drfleet.errors import ConfigError, DrfleetError
from drfleet.runs import runstate, training
from drfleet.runs.placement import Capacity, place, rebalance, suggest
from drfleet.runs.specs import build, masked

SYSTEM = """\
# system.env, as DRfC writes it
DR_CLOUD=local
DR_AWS_APP_REGION=us-east-1
DR_LOCAL_S3_BUCKET=bucket
DR_SIMAPP_SOURCE=awsdeepracercommunity/deepracer-simapp
DR_SIMAPP_VERSION=6.0.4-cpu
DR_MINIO_IMAGE=latest
DR_WORKERS=3
"""
RUN = """\
DR_RUN_ID=0
DR_WORLD_NAME=reInvent2019_track

DR_RACE_TYPE=TIME_TRIAL
DR_CAR_NAME=FastCar
DR_DISPLAY_NAME=$DR_CAR_NAME
DR_RACER_NAME=${DR_CAR_NAME}
DR_TRAIN_MULTI_CONFIG=True
DR_TRAIN_ROUND_ROBIN_ADVANCE_DIST=0.1
DR_LOCAL_S3_MODEL_PREFIX=rl-deepracer-sagemaker
DR_LOCAL_S3_METRICS_PREFIX=rl-deepracer-sagemaker/metrics
"""


def drfc(
    tmp_path: Path,
    *,
    system: str = SYSTEM,
    run: str = RUN,
    episodes: int = 30,
    workers: dict[int, str] | None = None,
    network: str = "DEEP_CONVOLUTIONAL_NETWORK_SHALLOW",
) -> Path:
    (tmp_path / "system.env").write_text(system)
    (tmp_path / "run.env").write_text(run)
    custom = tmp_path / "custom_files"
    custom.mkdir(exist_ok=True)
    (custom / "hyperparameters.json").write_text(
        json.dumps({"batch_size": 64, "num_episodes_between_training": episodes})
    )
    (custom / "model_metadata.json").write_text(json.dumps({"neural_network": network}))
    (custom / "reward_function.py").write_text("def reward_function(params):\n    return 1.0\n")
    default_workers = {
        2: "# worker 2\n\nDR_WORLD_NAME=Monaco\nDR_CAR_COLOR=Blue\n",
        3: "DR_WORLD_NAME=Bowtie_track\nDR_RACE_TYPE=OBJECT_AVOIDANCE\n"
        'DR_OA_OBJECT_POSITIONS="0.2,1;0.5,-1"\nDR_UNKNOWN_THING=a=b\n',
    }
    for k, text in (workers if workers is not None else default_workers).items():
        (tmp_path / f"worker-{k}.env").write_text(text)
    return tmp_path


def test_multi_config_layers_each_worker_on_run_env(tmp_path: Path) -> None:
    cfg = config.load(drfc(tmp_path))
    assert cfg.workers == 3 and cfg.multi_config and cfg.episodes == 30
    assert cfg.worker_values(1)["DR_WORLD_NAME"] == "reInvent2019_track"
    assert cfg.worker_values(2)["DR_CAR_COLOR"] == "Blue"
    assert "DR_CAR_COLOR" not in cfg.worker_values(3)  # not inherited from worker 2
    assert cfg.get("DR_DISPLAY_NAME") == "FastCar" and cfg.get("DR_RACER_NAME") == "FastCar"
    assert any("DR_UNKNOWN_THING is not a per-worker setting" in w for w in cfg.warnings)


def test_missing_worker_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        config.load(drfc(tmp_path, workers={2: "DR_WORLD_NAME=Monaco\n"}))
    assert "worker-3.env" in exc.value.message and "missing" in exc.value.message


def test_zero_workers_and_too_many_workers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 1 worker"):
        config.load(drfc(tmp_path, system=SYSTEM.replace("DR_WORKERS=3", "DR_WORKERS=0")))
    cfg = config.load(drfc(tmp_path, episodes=2, run=RUN.replace("=True", "=False")))
    with pytest.raises(ConfigError) as exc:
        checks.check(cfg)
    assert "3 workers but num_episodes_between_training is 2" in exc.value.message
    assert "hyperparameters.json" in exc.value.message


@pytest.mark.parametrize(
    ("worker2", "key", "line"),
    [
        ('DR_WORLD_NAME=\'Monaco" + __import__("os").system("id") + "\'\n', "DR_WORLD_NAME", 1),
        ("\nDR_CAR_COLOR='Red; touch /tmp/pwned'\n", "DR_CAR_COLOR", 2),
        ("DR_CAR_BODY_SHELL_TYPE='$(id)'\n", "DR_CAR_BODY_SHELL_TYPE", 1),
    ],
)
def test_names_the_simapp_would_run_as_code_are_refused(
    tmp_path: Path, worker2: str, key: str, line: int
) -> None:
    """download_params_and_roslaunch_agent.py puts colors and shells into a shell line and
    empty_world.launch.py evaluates the world name as Python: only plain names get through."""
    cfg = config.load(drfc(tmp_path, workers={2: worker2, 3: "DR_WORLD_NAME=Monaco\n"}))
    with pytest.raises(ConfigError) as exc:
        checks.check(cfg)
    assert f"worker-2.env:{line}" in exc.value.message and key in exc.value.message
    assert "not a plain name" in exc.value.message


def test_a_plain_name_the_simapp_does_not_know_is_a_warning(tmp_path: Path) -> None:
    cfg = config.load(drfc(tmp_path, workers={2: "DR_CAR_COLOR=red\n", 3: "DR_WORLD_NAME=x\n"}))
    warnings = checks.check(cfg).warnings
    assert any(
        "worker-2.env:1: DR_CAR_COLOR=red is not a name the simapp knows" in w for w in warnings
    )


def test_malformed_hyperparameters_names_file_and_line(tmp_path: Path) -> None:
    d = drfc(tmp_path)
    (d / "custom_files" / "hyperparameters.json").write_text('{\n  "batch_size": 64,\n}\n')
    with pytest.raises(ConfigError) as exc:
        config.load(d)
    assert "hyperparameters.json:3: not valid JSON" in exc.value.message


def test_env_line_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        config.load(drfc(tmp_path, run=RUN + "this is not a setting\n"))
    assert "run.env:12: cannot read this line" in exc.value.message


def test_experiment_directory(tmp_path: Path) -> None:
    d = drfc(tmp_path, system=SYSTEM + "DR_EXPERIMENT_NAME=exp1\n")
    exp = d / "experiments" / "exp1"
    exp.mkdir(parents=True)
    drfc(
        exp,
        run=RUN.replace("reInvent2019_track", "Vegas"),
        workers={2: "DR_WORLD_NAME=A\n", 3: "DR_WORLD_NAME=B\n"},
    )
    cfg = config.load(d)
    assert cfg.get("DR_WORLD_NAME") == "Vegas" and cfg.custom_dir == exp / "custom_files"


def test_shares_and_round_robin(tmp_path: Path) -> None:
    assert checks.shares(20, 3) == [7, 7, 6] and checks.shares(30, 3) == [10, 10, 10]
    cfg = config.load(drfc(tmp_path, run=RUN.replace("=True", "=False")))
    assert not [w for w in checks.check(cfg).warnings if "of the track" in w]  # 30x0.1/3 = 1
    cfg = config.load(
        drfc(
            tmp_path,
            episodes=20,
            run=RUN.replace("=True", "=False").replace("ADVANCE_DIST=0.1", "ADVANCE_DIST=0.05"),
        )
    )
    warning = next(w for w in checks.check(cfg).warnings if "of the track" in w)
    assert "covers 0.33 of the track" in warning
    assert "DR_TRAIN_ROUND_ROBIN_ADVANCE_DIST=0.15" in warning
    assert "num_episodes_between_training=60" in warning


def test_step_cap_advice(tmp_path: Path) -> None:
    cfg = config.load(
        drfc(
            tmp_path,
            episodes=10,
            network="DEEP_CONVOLUTIONAL_NETWORK",
            run=RUN.replace("=True", "=False"),
        )
    )
    advice = checks.check(cfg)
    assert advice.max_steps == 3000
    assert any("num_episodes_between_training=10 exceeds the 5" in w for w in advice.warnings)


def test_params_single_config_like_drfc(tmp_path: Path) -> None:
    cfg = config.load(drfc(tmp_path, run=RUN.replace("=True", "=False")))
    files = params.files(cfg, now=0)
    assert list(files) == ["training_params.yaml"]
    p = files["training_params.yaml"]
    assert p["WORLD_NAME"] == "reInvent2019_track" and p["NUM_WORKERS"] == "3"
    assert p["METRICS_S3_OBJECT_KEY"] == "rl-deepracer-sagemaker/metrics/TrainingMetrics.json"
    assert p["DISPLAY_NAME"] == "FastCar" and p["REVERSE_DIR"] is False
    assert "NUMBER_OF_OBSTACLES" not in p
    text = params.dump(p)
    assert text.startswith("---\n'ALTERNATE_DRIVING_DIRECTION': 'false'\n")
    assert "'WORLD_NAME': 'reInvent2019_track'" in text
    assert yaml.safe_load(text) == p
    assert (
        params.s3_key(cfg, "training_params.yaml") == "rl-deepracer-sagemaker/training_params.yaml"
    )


def test_params_multi_config_and_race_keys_do_not_leak(tmp_path: Path) -> None:
    cfg = config.load(
        drfc(
            tmp_path,
            workers={
                2: "DR_WORLD_NAME=Monaco\nDR_RACE_TYPE=HEAD_TO_BOT\n",
                3: "DR_WORLD_NAME=Bowtie_track\n",
            },
        )
    )
    files = params.files(cfg, now=0)
    assert list(files) == [
        "training_params_1.yaml",
        "training_params_2.yaml",
        "training_params_3.yaml",
    ]
    assert files["training_params_2.yaml"]["PENALTY_SECONDS"] == "2.0"
    assert "PENALTY_SECONDS" not in files["training_params_3.yaml"]  # DRfC leaks it
    assert files["training_params_3.yaml"]["RACE_TYPE"] == "TIME_TRIAL"
    assert "MULTI_CONFIG" not in files["training_params_1.yaml"]
    assert files["training_params_2.yaml"]["MULTI_CONFIG"] == "True"
    mc = json.loads(params.multi_config(files))
    assert mc == {
        "multi_config": [
            {"config_file": "training_params_1.yaml", "world_name": "reInvent2019_track"},
            {"config_file": "training_params_2.yaml", "world_name": "Monaco"},
            {"config_file": "training_params_3.yaml", "world_name": "Bowtie_track"},
        ]
    }


def test_object_positions(tmp_path: Path) -> None:
    cfg = config.load(drfc(tmp_path))
    w3 = params.files(cfg, now=0)["training_params_3.yaml"]
    assert w3["OBJECT_POSITIONS"] == ["0.2,1", "0.5,-1"] and w3["NUMBER_OF_OBSTACLES"] == "2"


C5 = {"vcpus": 16, "memory_mb": 32768}


def caps(*specs: tuple[str, int, bool]) -> list[Capacity]:
    return [Capacity(host=n, vcpus=v, trainer=t) for n, v, t in specs]


def test_c5_4xlarge_trainer_takes_trainer_and_three_workers() -> None:
    c = caps(("t", 16, True))
    assert suggest(c) == 3
    plan = place(3, c, ["w"] * 3, [10, 10, 10], ["p"] * 3)
    assert [w.host for w in plan.workers] == ["t", "t", "t"]
    assert [w.video_port for w in plan.workers] == [8080, 8081, 8082]


def test_workers_spread_evenly() -> None:
    c = caps(("t", 16, True), ("a", 16, False), ("b", 16, False))
    plan = place(5, c, [f"w{i}" for i in range(5)], [6, 6, 6, 6, 6], ["p"] * 5)
    hosts = [w.host for w in plan.workers]
    assert {h: hosts.count(h) for h in "tab"} == {"t": 1, "a": 2, "b": 2}
    assert [w.slot for w in plan.workers] == [1, 2, 3, 4, 5]


def test_not_enough_capacity_says_what_fits() -> None:
    c = caps(("t", 16, True), ("a", 8, False))
    with pytest.raises(ConfigError) as exc:
        place(6, c, ["w"] * 6, [1] * 6, ["p"] * 6)
    msg = exc.value.message
    assert "6 workers do not fit: this inventory has room for 5" in msg
    assert "DR_WORKERS=5" in msg


def test_specs_follow_the_plan(tmp_path: Path) -> None:
    cfg = config.load(drfc(tmp_path))
    files = params.files(cfg, now=0)
    c = caps(("t", 16, True), ("g", 16, False))
    c[1] = Capacity(host="g", vcpus=16, gpus=1, opengl=True, worker_vcpus=2)
    plan = place(3, c, ["a", "b", "c"], [10, 10, 10], list(files))
    docs = build(
        plan,
        cfg,
        {x.host: x for x in c},
        {"access_key": "AK", "secret_key": "SK"},
        files,
        generation=1,
    )
    names = {h: [s["name"] for s in d["containers"]] for h, d in docs.items()}
    assert names["t"][:1] == ["drfleet-rlcoach"]  # minio is a stack of its own
    assert {d["stack"] for d in docs.values()} == {"deepracer-0"}
    robo = {
        s["name"]: s for d in docs.values() for s in d["containers"] if s["role"] == "robomaker"
    }
    assert set(robo) == {"drfleet-robomaker-1", "drfleet-robomaker-2", "drfleet-robomaker-3"}
    r = robo["drfleet-robomaker-2"]
    assert r["env"]["DOCKER_REPLICA_SLOT"] == "2"
    # one string: the image's entrypoint is /bin/bash -c
    assert r["command"] == ["/opt/ml/code/run.sh multi distributed_training.launch.py"]
    assert r["env"]["MULTI_CONFIG"] == params.multi_config(files)
    gpu_worker = next(s for s in robo.values() if s["image"].endswith("-gpu"))
    assert gpu_worker["gpus"] == -1 and gpu_worker["env"]["DISPLAY"] == ":99"
    assert {"source": "/tmp/.X11-unix", "target": "/tmp/.X11-unix"} in gpu_worker["mounts"]
    shown = json.dumps([masked(d) for d in docs.values()])
    assert "SK" not in shown and "<secret>" in shown


def test_plan_and_dry_run_from_the_command_line(tmp_path: Path) -> None:
    from drfleet_agent.spec import parse

    from tests.conftest import drfleet, schema_ok

    d = drfc(tmp_path)
    (d / "inv.yml").write_text(
        "all:\n  hosts:\n"
        "    t: {address: 10.0.0.10, roles: [trainer, robomaker], instance_type: c5.4xlarge}\n"
        "    w1: {address: 10.0.0.11, roles: [robomaker], vcpus: 8}\n"
    )
    run = drfleet("plan", "--inventory", "inv.yml", "--json", cwd=d)
    assert run.code == 0, run.stderr
    schema_ok("plan", run.json)
    doc = run.json["plan"]  # the shape train --json and --dry-run --json print it in
    dry = drfleet("train", "--dry-run", "--out", "dry", "--inventory", "inv.yml", "-j", cwd=d)
    assert dry.json["plan"] == doc
    assert doc["trainer"] == {"host": "t"}
    assert [(w["slot"], w["world"], w["episodes"], w["config_file"]) for w in doc["workers"]] == [
        (1, "reInvent2019_track", 10, "training_params_1.yaml"),
        (2, "Monaco", 10, "training_params_2.yaml"),
        (3, "Bowtie_track", 10, "training_params_3.yaml"),
    ]
    assert {w["host"] for w in doc["workers"]} == {"t", "w1"}
    run = drfleet("train", "--dry-run", "--out", "out", "--inventory", "inv.yml", cwd=d)
    assert run.code == 0, run.stderr
    s3 = d / "out" / "rl-deepracer-sagemaker"
    assert (d / "out" / "custom_files" / "hyperparameters.json").exists()
    assert sorted(p.name for p in s3.iterdir()) == [
        "reward_function.py",
        "training_params_1.yaml",
        "training_params_2.yaml",
        "training_params_3.yaml",
    ]
    assert yaml.safe_load((s3 / "training_params_2.yaml").read_text())["WORLD_NAME"] == "Monaco"
    for host in ("t", "w1"):
        desired = (d / "out" / "hosts" / host / "desired.json").read_text()
        state = parse(desired)  # exactly what an agent accepts
        assert all(
            c.env.get("AWS_SECRET_ACCESS_KEY", "<secret>") == "<secret>" for c in state.containers
        )
        assert state.stack == "deepracer-0"
        for c in state.containers:  # whose it is, as train labels them
            assert c.labels["drfleet-run"] == "(made by the first train)"
            assert c.labels["drfleet-env"].endswith(f":{d.resolve()}")
            assert c.labels["drfleet-prefix"] == "rl-deepracer-sagemaker"
    minio = parse((d / "out" / "hosts" / "t" / "s3.json").read_text())
    assert minio.stack == "s3" and [c.role for c in minio.containers] == ["minio"]
    assert minio.containers[0].env["MINIO_ROOT_PASSWORD"] == "<secret>"
    assert not (d / ".drfleet").exists()  # a dry run makes no credentials, nor an identity


def test_init_writes_defaults_and_never_overwrites(tmp_path: Path) -> None:
    from tests.conftest import drfleet

    (tmp_path / "run.env").write_text("DR_WORLD_NAME=Mine\n")
    run = drfleet("init", cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert "kept    run.env (exists)" in run.stdout
    assert (tmp_path / "run.env").read_text() == "DR_WORLD_NAME=Mine\n"
    for f in (
        "system.env",
        "inventory/local.yml",
        "custom_files/hyperparameters.json",
        "custom_files/model_metadata.json",
        "custom_files/reward_function.py",
    ):
        assert (tmp_path / f).exists(), f
    (tmp_path / "run.env").unlink()
    drfleet("init", cwd=tmp_path)
    cfg = config.load(tmp_path)  # the defaults load and pass the checks
    checks.check(cfg)
    assert cfg.get("DR_DISPLAY_NAME") == "FastCar"


def test_converge_decision_from_a_rebalanced_run_state(tmp_path: Path) -> None:
    """run state -> each host's desired state (pure): after a host is lost and its slots move,
    every slot is desired exactly once, on its new host, with its world and params file kept;
    the lost host is given nothing; every state carries the run record's generation."""
    c = caps(("t", 16, True), ("a", 8, False), ("b", 12, False))
    cfg_dir = drfc(tmp_path)
    by_host = {x.host: x for x in c}
    before = training.prepare(cfg_dir, by_host)
    lost_host = next(w.host for w in before.plan.workers if w.host != "t")
    after, moved = rebalance(before.plan, c, {lost_host})
    state = runstate.RunState("0", "bucket", "p", 7, after)
    survivors = {h: cap for h, cap in by_host.items() if h != lost_host}
    p = training.prepare_from(cfg_dir, survivors, state.plan, {lost_host}, inventory_stub())
    docs = training.desired(p, {"access_key": "AK", "secret_key": "SK"}, state.generation)
    assert lost_host not in docs and moved
    assert {d["generation"] for d in docs.values()} == {7}
    where = {
        int(s["env"]["DOCKER_REPLICA_SLOT"]): (h, s["env"]["WORLD_NAME"], s["env"]["S3_YAML_NAME"])
        for h, d in docs.items()
        for s in d["containers"]
        if s["role"] == "robomaker"
    }
    assert where == {w.slot: (w.host, w.world, w.config_file) for w in after.workers}
    old = {w.slot: (w.world, w.config_file) for w in before.plan.workers}
    assert {s: (v[1], v[2]) for s, v in where.items()} == old


def inventory_stub() -> Any:
    from drfleet.hosts import inventory

    return inventory.Inventory(path="inventory.yml", hosts={}, groups={})


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("DR_LOCAL_S3_MODEL_PREFIX=/tmp/x", "DR_LOCAL_S3_MODEL_PREFIX"),
        (
            "DR_LOCAL_S3_CUSTOM_FILES_PREFIX=../../../../root/.ssh",
            "DR_LOCAL_S3_CUSTOM_FILES_PREFIX",
        ),
        ("DR_LOCAL_S3_REWARD_KEY=custom_files/../../x.py", "DR_LOCAL_S3_REWARD_KEY"),
        ("DR_LOCAL_S3_TRAINING_PARAMS_FILE=", "DR_LOCAL_S3_TRAINING_PARAMS_FILE"),
    ],
)
def test_s3_keys_that_leave_their_place_are_refused_and_dry_run_writes_nothing(
    tmp_path: Path, line: str, key: str
) -> None:
    """`train --dry-run --out DIR` writes files named by S3 keys: a key that is absolute or
    climbs out is refused when the config loads, naming file and line; nothing is written."""
    env = drfc(tmp_path, run=RUN + line + "\n")
    with pytest.raises(ConfigError) as exc:
        training.prepare(env, {c.host: c for c in caps(("t", 16, True), ("a", 16, False))})
    lines = (env / "run.env").read_text().splitlines()
    assert f"run.env:{len(lines)}" in exc.value.message and key in exc.value.message
    assert not (tmp_path / "out").exists()


def test_credentials_readable_by_others_are_refused_with_the_fix(tmp_path: Path) -> None:
    creds = training.credentials(tmp_path)
    path = tmp_path / ".drfleet" / "minio-credentials.json"
    assert (path.stat().st_mode & 0o777) == 0o600 and training.credentials(tmp_path) == creds
    path.chmod(0o644)
    with pytest.raises(DrfleetError) as exc:
        training.credentials(tmp_path)
    assert "readable by others" in str(exc.value) and f"chmod 600 {path}" in str(exc.value)
    assert creds["secret_key"] not in str(exc.value)


def test_debug_logging_keeps_other_libraries_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's debug log prints access key ids and signatures: DRFLEET_DEBUG=1 is
    drfleet's own log only; DRFLEET_DEBUG=all asks for everything."""
    import logging

    from drfleet.commandline.command import setup_logging

    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        for env, verbose in (("1", 0), ("", 1), ("", 2)):  # DRFLEET_DEBUG=1, -v, -vv
            root.handlers.clear()
            root.setLevel(logging.WARNING)
            monkeypatch.setenv("DRFLEET_DEBUG", env)
            setup_logging(verbose)
            assert logging.getLogger("drfleet.hosts.remote").isEnabledFor(logging.DEBUG)
            assert not logging.getLogger("botocore.auth").isEnabledFor(logging.DEBUG)
            assert not logging.getLogger("paramiko.transport").isEnabledFor(logging.DEBUG)
        root.handlers.clear()
        setup_logging(3)  # -vvv: everything, asked for
        assert logging.getLogger("paramiko.transport").isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        logging.getLogger("drfleet").setLevel(logging.NOTSET)


def test_evaluate_dry_run_writes_the_params_and_the_runs_eval_stack(tmp_path: Path) -> None:
    """`evaluate --dry-run --out DIR`: the eval params at DIR/<their S3 key> and the host's
    desired state (the run's evaluation stack) at DIR/hosts/<host>/desired.json; nothing else
    is touched, no credentials made."""
    from drfleet_agent.spec import parse

    from tests.conftest import drfleet

    d = drfc(tmp_path, run=RUN + "DR_RUN_ID=2\n")
    (d / "inv.yml").write_text(
        "all:\n  hosts:\n"
        "    t: {address: 10.0.0.10, roles: [trainer, robomaker], vcpus: 16}\n"
        "    w1: {address: 10.0.0.11, roles: [robomaker], vcpus: 8}\n"
    )
    run = drfleet("evaluate", "--dry-run", "--out", "out", "-i", "inv.yml", "--json", cwd=d)
    assert run.code == 0, run.stderr
    assert run.json["host"] == "t" and run.json["run"] == "2"  # the most room, no run yet
    assert (d / "out" / run.json["params"]).exists()
    state = parse((d / "out" / "hosts" / "t" / "desired.json").read_text())
    assert state.stack == "deepracer-eval-2" and state.run_id == "2"
    (ev,) = state.containers
    assert ev.name == "drfleet-2-eval" and ev.ports == {"8080/tcp": 8278}
    assert ev.env["AWS_SECRET_ACCESS_KEY"] == "<secret>"
    assert not (d / ".drfleet").exists()


def test_the_sagemaker_job_folder_stop_removes_is_local_modes_own() -> None:
    """sagemaker 2.x local mode: <container_root>/<mkdtemp>/<host>/input is the container's
    /opt/ml/input, and <container_root>/<mkdtemp>/docker-compose.yaml holds the job's keys."""
    from drfleet.runs.sagemaker import job_dir

    def inspected(source: str, dest: str = "/opt/ml/input") -> dict[str, Any]:
        return {"Mounts": [{"Source": source, "Destination": dest}]}

    assert job_dir(inspected("/tmp/sagemaker/tmpab12cd/algo-1-x7k2p/input")) == (
        "/tmp/sagemaker/tmpab12cd"
    )
    for bad in (
        inspected("/tmp/sagemaker/../etc/x/input"),
        inspected("/var/lib/docker/x/algo-1-x/input"),
        inspected("/tmp/sagemaker/tmpab12cd/algo-1-x7k2p/input", "/opt/ml/output"),
        inspected("/tmp/sagemaker/tmpab12cd/input"),
        {},
    ):
        assert job_dir(bad) == ""


def test_the_config_reads_its_settings_alone_for_a_command_that_needs_no_more(
    tmp_path: Path,
) -> None:
    """download-custom-files runs on a machine that has only system.env and run.env."""
    env = drfc(tmp_path)
    for f in (env / "custom_files").iterdir():
        f.unlink()
    for f in env.glob("worker-*.env"):
        f.unlink()
    with pytest.raises(ConfigError, match=r"needs worker-2\.env"):
        config.load(env)
    cfg = config.load(env, settings_only=True)
    assert cfg.custom_dir == env.resolve() / "custom_files" and cfg.reward_function == ""
    assert cfg.setting("DR_LOCAL_S3_BUCKET") == "bucket"


def test_a_local_minio_takes_the_keys_of_dr_local_s3_profile_when_this_machine_has_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DRfC's activate.sh reads minio's keys from DR_LOCAL_S3_PROFILE (`minio` by default):
    so does drfleet, when the keys are made; without that profile (or with keys minio would
    refuse) drfleet makes its own, and train's note says which."""
    from drfleet.runs import storage

    home = tmp_path / "aws"
    home.mkdir()
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "config"))
    for var in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var, raising=False)
    (home / "credentials").write_text(
        "[minio]\naws_access_key_id = drfcminio\naws_secret_access_key = drfc-secret-42\n"
        "[short]\naws_access_key_id = ab\naws_secret_access_key = x\n"
    )
    (tmp_path / "a").mkdir()
    env = drfc(tmp_path / "a")
    cfg = config.load(env)
    assert storage.run_credentials(cfg, env, create=False) == {}  # a reader makes none
    keys = storage.run_credentials(cfg, env)
    assert keys == {"access_key": "drfcminio", "secret_key": "drfc-secret-42"}
    assert "AWS profile minio" in storage.minio_keys_note(cfg, keys)
    assert json.loads((env / ".drfleet" / "minio-credentials.json").read_text()) == keys
    for profile in ("nowhere", "short"):
        (tmp_path / profile).mkdir()
        other = drfc(tmp_path / profile, system=SYSTEM + f"DR_LOCAL_S3_PROFILE={profile}\n")
        cfg = config.load(other)
        made = storage.run_credentials(cfg, other)
        assert made["access_key"].startswith("drfleet") and len(made["secret_key"]) == 48
        assert "drfleet's own" in storage.minio_keys_note(cfg, made)

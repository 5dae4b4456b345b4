"""evaluate's pure parts: the eval params as DRfC's evaluation prepare-config.py writes them,
the evaluation container as docker-compose-eval.yml runs it, the host it goes to, the desired
state it joins, and the results table."""

from __future__ import annotations

from pathlib import Path

import pytest

from drfleet.drfc import config, eval_params, params
from drfleet.errors import DrfleetError
from drfleet.runs import evaluation, specs, training
from drfleet.runs.placement import Capacity, Placement, Plan

# DRfC's scripts/evaluation/prepare-config.py (2eb1a1f), run on DRfC's own template run.env
# and system.env with DR_CLOUD=local, DR_AWS_APP_REGION=eu-west-1, DR_RACE_TYPE=HEAD_TO_BOT
# and DR_EVAL_SAVE_MP4=True; its timestamp replaced by {stamp}
DRFC_H2B = """\
---
'AWS_REGION': 'eu-west-1'
'BODY_SHELL_TYPE':
- 'deepracer'
'BOT_CAR_SPEED': '0.2'
'CAMERA_MAIN_ENABLE': 'True'
'CAMERA_SUB_ENABLE': 'False'
'CAR_COLOR':
- 'Red'
'COLLISION_PENALTY': '5.0'
'DISPLAY_NAME':
- 'FastCar'
'ENABLE_DOMAIN_RANDOMIZATION': 'False'
'ENABLE_EXTRA_KVS_OVERLAY': 'False'
'EVAL_CHECKPOINT': 'last'
'IS_CONTINUOUS': 'True'
'IS_LANE_CHANGE': 'False'
'JOB_TYPE': 'EVALUATION'
'KINESIS_VIDEO_STREAM_NAME': ''
'LANE_CHANGE_DISTANCE': '1.0'
'LOWER_LANE_CHANGE_TIME': '3.0'
'METRICS_S3_BUCKET':
- 'bucket'
'METRICS_S3_OBJECT_KEY':
- 'rl-deepracer-sagemaker/metrics/evaluation/evaluation-{stamp}.json'
'MIN_DISTANCE_BETWEEN_BOT_CARS': '2.0'
'MODEL_S3_BUCKET':
- 'bucket'
'MODEL_S3_PREFIX':
- 'rl-deepracer-sagemaker'
'MP4_S3_BUCKET':
- 'bucket'
'MP4_S3_OBJECT_PREFIX':
- 'rl-deepracer-sagemaker/mp4'
'NUMBER_OF_BOT_CARS': '3'
'NUMBER_OF_RESETS': '100'
'NUMBER_OF_TRIALS': '3'
'OFF_TRACK_PENALTY': '5.0'
'PENALTY_SECONDS': '5.0'
'RACER_NAME':
- 'FastCar'
'RACE_TYPE': 'HEAD_TO_BOT'
'RANDOMIZE_BOT_CAR_LOCATIONS': 'False'
'RESET_BEHIND_DIST': '1.0'
'REVERSE_DIR': 'False'
'ROBOMAKER_SIMULATION_JOB_ACCOUNT_ID': 'Dummy'
'S3_ENDPOINT_URL': 'http://minio:9000'
'SIMTRACE_S3_BUCKET':
- 'bucket'
'SIMTRACE_S3_PREFIX':
- 'rl-deepracer-sagemaker/evaluation-{stamp}'
'UPPER_LANE_CHANGE_TIME': '5.0'
'WORLD_NAME': 'reinvent_base'
"""


def cfg_of(tmp_path: Path, run: str = "", system: str = "") -> config.TrainingConfig:
    training.init(tmp_path)
    (tmp_path / "system.env").write_text((tmp_path / "system.env").read_text() + system)
    (tmp_path / "run.env").write_text((tmp_path / "run.env").read_text() + "\n" + run)
    return config.load(tmp_path, environ={})


def test_eval_params_are_byte_for_byte_drfcs(tmp_path: Path) -> None:
    cfg = cfg_of(
        tmp_path,
        "DR_RACE_TYPE=HEAD_TO_BOT\nDR_EVAL_SAVE_MP4=True\n",
        "DR_AWS_APP_REGION=eu-west-1\nDR_CLOUD=local\n",
    )
    now = 1_700_000_000
    text = params.dump(eval_params.params(cfg, now))
    assert text == DRFC_H2B.replace("{stamp}", eval_params.stamp(now))
    assert eval_params.metrics_key(cfg, now) == (
        f"rl-deepracer-sagemaker/metrics/evaluation/evaluation-{eval_params.stamp(now)}.json"
    )


def test_eval_params_against_another_model_name_both_cars(tmp_path: Path) -> None:
    """HEAD_TO_MODEL: the opponent's prefix, metrics and names are second in each list, and
    the car colors are DRfC's fixed pair; aws: no S3_ENDPOINT_URL."""
    cfg = cfg_of(
        tmp_path,
        "DR_RACE_TYPE=HEAD_TO_MODEL\nDR_EVAL_OPP_S3_MODEL_PREFIX=rival\n",
        "DR_CLOUD=aws\n",
    )
    p = eval_params.params(cfg, 1_700_000_000)
    assert p["MODEL_S3_PREFIX"] == ["rl-deepracer-sagemaker", "rival"]
    assert p["METRICS_S3_OBJECT_KEY"][1] == "rival/metrics/EvaluationMetrics-1700000000.json"
    assert p["CAR_COLOR"] == ["Purple", "Orange"] and p["VIDEO_JOB_TYPE"] == "EVALUATION"
    assert p["DISPLAY_NAME"][1] == "FasterCar"  # $DR_EVAL_OPP_CAR_NAME, expanded as bash does
    assert "S3_ENDPOINT_URL" not in p


def test_the_evaluation_container_is_docker_compose_evals(tmp_path: Path) -> None:
    cfg = cfg_of(tmp_path, "DR_EVAL_RTF=2.0\n", "DR_CLOUD=local\n")
    cap = Capacity(host="w", vcpus=8, gpus=1)
    spec = specs.evaluation(cfg, cap, {"access_key": "AK", "secret_key": "SK"}, "e.yaml", "4,5")
    assert spec["name"] == "drfleet-eval" and spec["role"] == "evaluation"
    assert spec["command"] == ["/opt/ml/code/run.sh run evaluation.launch.py"]
    env = spec["env"]
    assert {k: env[k] for k in ("ROLLOUT_IDX", "S3_YAML_NAME", "RTF_OVERRIDE")} == {
        "ROLLOUT_IDX": "0",
        "S3_YAML_NAME": "e.yaml",
        "RTF_OVERRIDE": "2.0",
    }
    assert env["MODEL_S3_PREFIX"] == "rl-deepracer-sagemaker" and env["MODEL_S3_BUCKET"] == "bucket"
    assert env["S3_ENDPOINT_URL"] == "http://minio:9000" and env["AWS_ACCESS_KEY_ID"] == "AK"
    assert env["DRFLEET_GAZEBO_CPUS"] == "4,5"
    assert spec["image"].endswith("-gpu") and spec["gpus"] == -1
    assert spec["ports"] == {"8080/tcp": 8078} and spec["restart"] == "never"


def plan_of(workers: dict[str, int]) -> Plan:
    placed = []
    slot = 1
    for host, n in workers.items():
        for _ in range(n):
            placed.append(Placement(slot, host, "w", 1, "c", 8079 + slot))
            slot += 1
    return Plan(trainer="t", workers=placed)


def test_the_evaluation_goes_where_there_is_room() -> None:
    caps = {
        "t": Capacity(host="t", vcpus=16, trainer=True),
        "a": Capacity(host="a", vcpus=8),
        "b": Capacity(host="b", vcpus=8),
    }
    plan = plan_of({"t": 3, "a": 2, "b": 1})  # t: 4 + 12 used, a: 8, b: 4
    assert evaluation.choose_host(caps, plan, None) == ("b", [])
    host, warnings = evaluation.choose_host(caps, plan, "a")
    assert host == "a" and "a has 0 vCPUs left" in warnings[0]
    with pytest.raises(DrfleetError, match="no host has room"):
        evaluation.choose_host(caps, plan_of({"t": 3, "a": 2, "b": 2}), None)
    with pytest.raises(DrfleetError, match="--host c: not a host"):
        evaluation.choose_host(caps, plan, "c")
    assert evaluation.choose_host(caps, None, None)[0] == "t"  # no run: the most room


def test_the_evaluations_gazebo_takes_the_cpus_after_the_hosts_workers() -> None:
    assert evaluation.gazebo_cpus(1, 8) == "2,3"  # after the host's one worker
    assert evaluation.gazebo_cpus(0, 8) == "0,1"
    assert evaluation.gazebo_cpus(4, 8) == "0,1"  # a full host: shared, wrapping round


def test_results_are_the_simapps_eval_metrics_as_a_table() -> None:
    doc = {
        "metrics": [
            {
                "completion_percentage": 100,
                "elapsed_time_in_milliseconds": 10250,
                "episode_status": "Lap complete",
                "off_track_count": 0,
                "crash_count": 0,
                "reset_count": 0,
                "trial": 1,
            },
            {
                "completion_percentage": 42,
                "elapsed_time_in_milliseconds": 10500,
                "episode_status": "Off track",
                "off_track_count": 1,
                "crash_count": 0,
                "reset_count": 1,
                "trial": 2,
            },
        ]
    }
    rows = evaluation.rows(doc)
    assert rows[1] == {
        "trial": 2,
        "status": "Off track",
        "progress": 42.0,
        "lap_time": 10.5,
        "off_track": 1,
        "crashes": 0,
        "resets": 1,
    }
    assert evaluation.summary(rows) == {
        "trials": 2,
        "laps_completed": 1,
        "best_lap_time": 10.25,
        "mean_progress": 71.0,
    }


def test_a_cloned_evaluation_runs_on_prefix_e_and_reports_under_the_trained_metrics(
    tmp_path: Path,
) -> None:
    """start.sh -c exports DR_LOCAL_S3_MODEL_PREFIX=<prefix>-E after activate.sh expanded
    run.env: the params and the container name the copy, the metrics stay where the trained
    model's are ($DR_LOCAL_S3_METRICS_PREFIX was expanded with the old prefix)."""
    cfg = evaluation.cloned(cfg_of(tmp_path, "", "DR_CLOUD=local\n"))
    p = eval_params.params(cfg, 1_700_000_000)
    assert p["MODEL_S3_PREFIX"] == ["rl-deepracer-sagemaker-E"]
    assert p["METRICS_S3_OBJECT_KEY"][0].startswith("rl-deepracer-sagemaker/metrics/evaluation/")
    assert params.s3_key(cfg, eval_params.params_name(cfg)).startswith("rl-deepracer-sagemaker-E/")
    cap = Capacity(host="w", vcpus=8)
    spec = specs.evaluation(cfg, cap, {"access_key": "AK", "secret_key": "SK"}, "e.yaml", "0,1")
    assert spec["env"]["MODEL_S3_PREFIX"] == "rl-deepracer-sagemaker-E"


def test_the_evaluation_gets_the_mounts_and_x_server_a_worker_there_gets(tmp_path: Path) -> None:
    """activate.sh adds -mount.yml, -simapp.yml, -robomaker-scripts.yml and -local-xorg.yml to
    DR_EVAL_COMPOSE_FILE as to DR_TRAIN_COMPOSE_FILE: the evaluation mounts what a worker on
    the same host mounts, and renders on an OpenGL host's X server."""
    cfg = cfg_of(tmp_path, "", "DR_CLOUD=local\nDR_ROBOMAKER_MOUNT_LOGS=True\n")
    cap = Capacity(host="w", vcpus=8, opengl=True)
    staged = {"DR_ROBOMAKER_MOUNT_SCRIPTS_DIR": "/var/lib/drfleet/files/abc"}
    creds = {"access_key": "AK", "secret_key": "SK"}
    spec = specs.evaluation(cfg, cap, creds, "e.yaml", "0,1", staged)
    worker = specs.robomaker(cfg, Placement(1, "w", "w", 1, "c", 8080), cap, creds, 1, "", staged)
    assert spec["mounts"] == worker["mounts"]
    assert {"source": "/var/lib/drfleet/files/abc", "target": "/scripts"} in spec["mounts"]
    assert any(m["target"] == "/root/.ros/log" for m in spec["mounts"])
    x = ("DISPLAY", "USE_EXTERNAL_X", "XAUTHORITY", "QT_X11_NO_MITSHM")
    assert {k: spec["env"][k] for k in x} == {k: worker["env"][k] for k in x}

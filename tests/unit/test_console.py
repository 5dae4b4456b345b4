"""upload-model, car-model and increment-training decisions (pure): DRfC's scripts/upload/*
and scripts/training/increment.sh."""

from __future__ import annotations

import pytest
import yaml

from drfleet.errors import DrfleetError
from drfleet.runs import increment
from drfleet.store import console

NAMES = [
    "1_Step-200.ckpt.data-00000-of-00001",
    "1_Step-200.ckpt.index",
    "1_Step-200.ckpt.meta",
    "10_Step-2200.ckpt.data-00000-of-00001",
    "10_Step-2200.ckpt.index",
    "10_Step-2200.ckpt.meta",
    "model_1.pb",
    "model_10.pb",
    "model_metadata.json",
    "deepracer_checkpoints.json",
    ".coach_checkpoint",
]
INDEX = {
    "best_checkpoint": {"name": "1_Step-200.ckpt", "avg_eval_metric": 79.0, "time_stamp": 5.0},
    "last_checkpoint": {"name": "10_Step-2200.ckpt", "avg_eval_metric": 60.0, "time_stamp": 9.0},
}


def test_last_best_or_a_number_and_the_index_the_target_gets() -> None:
    last = console.checkpoint(NAMES, INDEX, "last", 100.0)
    assert (last.name, last.number) == ("10_Step-2200.ckpt", 10)
    assert last.index == {"last_checkpoint": INDEX["last_checkpoint"]} | {
        "best_checkpoint": INDEX["last_checkpoint"]
    }
    best = console.checkpoint(NAMES, INDEX, "best", 100.0)
    assert best.name == "1_Step-200.ckpt" and best.index["last_checkpoint"]["name"] == best.name
    one = console.checkpoint(NAMES, None, "1", 100.0)  # -c N needs no index
    part = {"name": "1_Step-200.ckpt", "time_stamp": 100, "avg_comp_pct": 50.0}
    assert one.index == {"last_checkpoint": part, "best_checkpoint": part}
    with pytest.raises(DrfleetError, match="no checkpoint 7"):
        console.checkpoint(NAMES, INDEX, "7", 0)
    with pytest.raises(DrfleetError, match=r"no model/deepracer_checkpoints\.json"):
        console.checkpoint(NAMES, None, "last", 0)


def test_the_files_of_checkpoint_1_are_not_those_of_10() -> None:
    one = console.checkpoint(NAMES, INDEX, "best", 0)
    assert console.model_files(NAMES, one) == [
        "1_Step-200.ckpt.data-00000-of-00001",
        "1_Step-200.ckpt.index",
        "1_Step-200.ckpt.meta",
        "model_1.pb",
    ]
    gone = [n for n in NAMES if not n.startswith("1_")]
    with pytest.raises(DrfleetError, match="are gone from model/"):
        console.model_files(gone, one)


def test_console_layout_as_upload_model_sh_writes_it() -> None:
    src = console.Source.of({"DR_LOCAL_S3_MODEL_PREFIX": "m"}, None)
    assert src == console.Source(
        "m", "custom_files/reward_function.py", "rl-deepracer-sagemaker/metrics"
    )
    assert console.Source.of({}, "p") == console.Source("p", "p/reward_function.py", "p/metrics")
    ckpt = console.checkpoint(NAMES, INDEX, "last", 0)
    plan = console.console_objects(
        src, "up", ckpt, console.model_files(NAMES, ckpt), ["rl-deepracer-sagemaker/metrics/T.json"]
    )
    assert [t for _, t in plan] == [
        "up/model/10_Step-2200.ckpt.data-00000-of-00001",
        "up/model/10_Step-2200.ckpt.index",
        "up/model/10_Step-2200.ckpt.meta",
        "up/model/model_10.pb",
        "up/model/model_metadata.json",
        "up/model/.coach_checkpoint",
        "up/model/deepracer_checkpoints.json",
        "up/reward_function.py",
        "up/metrics/T.json",
        "up/training_params.yaml",
        "up/ip/hyperparameters.json",
        "up/model_metadata.json",
    ]
    assert (
        dict((t, k) for k, t in plan)["up/reward_function.py"] == "custom_files/reward_function.py"
    )
    bodies = console.written(ckpt, {}, "bucket2", "up")
    assert bodies["up/model/.coach_checkpoint"] == b"10_Step-2200.ckpt\n"
    assert set(bodies) == {k for k, t in [(t, k) for k, t in plan] if t is None}


def test_training_params_as_prepare_config_py_writes_them() -> None:
    # checked byte for byte against DRfC's scripts/upload/prepare-config.py for these inputs,
    # with TARGET_S3_BUCKET=up and TARGET_S3_PREFIX=my-model-2 exported (upload-model.sh does
    # not export them: docs/drfc-differences.md says why drfleet writes the target's names)
    text = console.training_params(
        {"DR_RACE_TYPE": "OBJECT_AVOIDANCE", "DR_OA_OBJECT_POSITIONS": "0.2,-1;0.5,1"},
        "up",
        "my-model-2",
    )
    assert text.startswith(
        "---\n'ALTERNATE_DRIVING_DIRECTION': 'false'\n'AWS_REGION': 'us-east-1'\n"
    )
    doc = yaml.safe_load(text)
    assert doc["OBJECT_POSITIONS"] == ["0.2,-1", "0.5,1"] and doc["NUMBER_OF_OBSTACLES"] == "2"
    assert doc["SAGEMAKER_SHARED_S3_PREFIX"] == "my-model-2"
    assert doc["MODEL_METADATA_FILE_S3_KEY"] == "my-model-2/model/model_metadata.json"
    where = {k: doc[k] for k in console.TARGET_KEYS}
    assert where == {
        "METRICS_S3_BUCKET": "up",
        "METRICS_S3_OBJECT_KEY": "my-model-2/TrainingMetrics.json",
        "MODEL_METADATA_FILE_S3_KEY": "my-model-2/model/model_metadata.json",
        "REWARD_FILE_S3_KEY": "my-model-2/reward_function.py",
        "SAGEMAKER_SHARED_S3_BUCKET": "up",
        "SAGEMAKER_SHARED_S3_PREFIX": "my-model-2",
    }
    assert "'CAR_COLOR': 'Red'" in text and "IS_LANE_CHANGE" not in doc
    f1 = yaml.safe_load(console.training_params({"DR_CAR_BODY_SHELL_TYPE": "f1_2021"}, "b", "p"))
    assert "CAR_COLOR" not in f1  # only the deepracer shell has a colour


def test_the_car_gets_the_frozen_graph_and_the_metadata() -> None:
    best = console.checkpoint(NAMES, INDEX, "best", 0)
    assert console.car_entries(best) == {
        "agent/model.pb": "model_1.pb",
        "model_metadata.json": "model_metadata.json",
    }


@pytest.mark.parametrize(
    ("current", "delim", "new"),
    [
        ("my-model-3", "-", "my-model-4"),
        ("my-model-9", "-", "my-model-10"),
        ("rl-deepracer-sagemaker", "-", "rl-deepracer-sagemaker-1"),
        ("model", "-", "model-1"),
        ("model_2", "_", "model_3"),
        ("a-2-b", "-", "a-2-b-1"),
    ],
)
def test_prefix_numbering(current: str, delim: str, new: str) -> None:
    assert increment.next_prefix(current, delim) == new


def test_run_env_keeps_every_other_byte_and_gains_what_it_lacks() -> None:
    text = (
        "# my run\nDR_LOCAL_S3_MODEL_PREFIX=m-1\nDR_LOCAL_S3_PRETRAINED=False\n"
        "# DR_LOCAL_S3_PRETRAINED_PREFIX=old\nDR_WORLD_NAME=Monaco"
    )
    changes = increment.training_changes("m-1", None, "-", "best")
    assert changes == {
        "DR_LOCAL_S3_PRETRAINED_PREFIX": "m-1",
        "DR_LOCAL_S3_PRETRAINED": "True",
        "DR_LOCAL_S3_MODEL_PREFIX": "m-2",
        "DR_LOCAL_S3_PRETRAINED_CHECKPOINT": "best",
    }
    assert increment.rewrite(text, changes) == (
        "# my run\nDR_LOCAL_S3_MODEL_PREFIX=m-2\nDR_LOCAL_S3_PRETRAINED=True\n"
        "# DR_LOCAL_S3_PRETRAINED_PREFIX=old\nDR_WORLD_NAME=Monaco\n"
        "DR_LOCAL_S3_PRETRAINED_PREFIX=m-1\nDR_LOCAL_S3_PRETRAINED_CHECKPOINT=best\n"
    )
    with pytest.raises(DrfleetError, match="equals the current"):
        increment.training_changes("m-1", "m-1", "-", None)
    with pytest.raises(DrfleetError, match="best or last"):
        increment.training_changes("m-1", None, "-", "first")

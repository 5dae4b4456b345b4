"""DeepRacer on AWS, decided (drfleet/store/droa.py): what DRfC's scripts/droa/*.py (2eb1a1f)
read, cache, build and print, checked against their rules."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from drfleet.errors import DrfleetError
from drfleet.store import console, droa
from drfleet.store.droa_import import content_type

ENV = {
    "apiEndpointUrl": "https://abc.execute-api.eu-west-1.amazonaws.com/prod/",
    "userPoolId": "eu-west-1_AbC",
    "userPoolClientId": "client1",
    "identityPoolId": "eu-west-1:1234",
    "region": "eu-west-1",
    "uploadBucketName": "droa-upload",
}


def test_the_site_is_read_from_its_env_js_as_json_or_as_a_js_literal() -> None:
    s = droa.site("https://droa.example.com/", f"window.EnvironmentConfig = {json.dumps(ENV)};")
    assert s.api == "https://abc.execute-api.eu-west-1.amazonaws.com/prod"
    assert (s.region, s.user_pool_id, s.upload_bucket) == (
        "eu-west-1",
        "eu-west-1_AbC",
        "droa-upload",
    )
    assert s.url == "https://droa.example.com"
    literal = (
        "window.EnvironmentConfig = {" + ", ".join(f"{k}: '{v}'" for k, v in ENV.items()) + ",};"
    )
    assert droa.site("https://d", literal) == droa.site(
        "https://d", f"window.EnvironmentConfig={json.dumps(ENV)};"
    )


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("<!doctype html><html><div id=root></div></html>", "no EnvironmentConfig there"),
        ('window.EnvironmentConfig = {"region": "x"};', "lacks userPoolId"),
        ("window.EnvironmentConfig = {region: x y};", "not readable"),
    ],
)
def test_a_page_that_is_not_a_droa_sites_env_js_is_named(text: str, said: str) -> None:
    with pytest.raises(DrfleetError) as e:
        droa.site("https://wrong.example.com", text)
    assert said in e.value.what and e.value.where == "https://wrong.example.com/env.js"


def test_the_login_cache_is_drfcs_file_and_its_sixty_second_rule() -> None:
    name = droa.cache_name("eu-west-1:1234", "me@example.com")
    assert name == hashlib.sha256(b"eu-west-1:1234:me@example.com").hexdigest()[:16] + ".json"
    now = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)
    creds = droa.Credentials("ASIA1", "secret", "token", now + timedelta(seconds=61))
    assert droa.cached(droa.cache_text(creds), now) == creds
    assert droa.cached(droa.cache_text(creds), now + timedelta(seconds=2)) is None
    naive = json.loads(droa.cache_text(creds))
    naive["expiry"] = (now + timedelta(hours=1)).replace(tzinfo=None).isoformat()
    assert droa.cached(json.dumps(naive), now) is not None  # auth.py: naive means UTC
    assert droa.cached("{not json", now) is None
    assert droa.cached(json.dumps({"expiry": "soon"}), now) is None


def test_the_runs_training_params_are_pointed_at_the_upload_and_the_track_made_droas() -> None:
    found = "---\nWORLD_NAME: 'reInvent2019_track_cw'\nMETRICS_S3_BUCKET: 'bucket'\nCAR_NAME: 'x'\n"
    text, said = droa.training_params(found, {}, "droa-upload", "uploads/models/u1")
    data = yaml.safe_load(text)
    assert data["WORLD_NAME"] == "reInvent2019_track" and data["TRACK_DIRECTION_CLOCKWISE"] is True
    assert data["METRICS_S3_BUCKET"] == data["SAGEMAKER_SHARED_S3_BUCKET"] == "droa-upload"
    assert data["SAGEMAKER_SHARED_S3_PREFIX"] == "uploads/models/u1"
    assert data["MODEL_METADATA_FILE_S3_KEY"] == "uploads/models/u1/model/model_metadata.json"
    assert data["REWARD_FILE_S3_KEY"] == "uploads/models/u1/reward_function.py"
    assert data["METRICS_S3_OBJECT_KEY"] == "uploads/models/u1/TrainingMetrics.json"
    assert data["CAR_NAME"] == "x"
    assert said == [
        "WORLD_NAME reInvent2019_track_cw -> reInvent2019_track",
        "TRACK_DIRECTION_CLOCKWISE=True",
    ]
    # the direction from DR_WORLD_NAME's suffix, else DR_TRAIN_REVERSE_DIRECTION
    plain = "WORLD_NAME: Monaco\n"
    ccw = droa.training_params(plain, {"DR_WORLD_NAME": "Monaco_ccw"}, "b", "p")[0]
    assert yaml.safe_load(ccw)["TRACK_DIRECTION_CLOCKWISE"] is False
    rev = droa.training_params(plain, {"DR_TRAIN_REVERSE_DIRECTION": "True"}, "b", "p")[0]
    assert yaml.safe_load(rev)["TRACK_DIRECTION_CLOCKWISE"] is False
    fwd = droa.training_params(plain, {}, "b", "p")[0]
    assert yaml.safe_load(fwd)["TRACK_DIRECTION_CLOCKWISE"] is True
    kept = droa.training_params(
        "WORLD_NAME: Monaco\nTRACK_DIRECTION_CLOCKWISE: false\n", {}, "b", "p"
    )
    assert yaml.safe_load(kept[0])["TRACK_DIRECTION_CLOCKWISE"] is False and kept[1] == []


def test_without_the_runs_params_they_are_generated_as_prepare_config_does() -> None:
    values = {"DR_WORLD_NAME": "Bowtie_track", "DR_CAR_NAME": "Fast", "DR_CAR_COLOR": "Blue"}
    text, said = droa.training_params(None, values, "b", "p")
    data = yaml.safe_load(text)
    generated = yaml.safe_load(console.training_params(values, "b", "p"))
    assert {k: v for k, v in data.items() if k != "TRACK_DIRECTION_CLOCKWISE"} == generated
    assert said[0] == "training_params.yaml generated from run.env"


def test_the_import_layout_is_import_models_and_names_the_metrics_droa_reads() -> None:
    src = console.Source("m", "m/reward_function.py", "m/metrics")
    entry = {"name": "3_Step-300.ckpt"}
    ckpt = console.Checkpoint(
        "3_Step-300.ckpt", 3, {"last_checkpoint": entry, "best_checkpoint": entry}
    )
    metrics = ["m/metrics/TrainingMetrics.json", "m/metrics/TrainingMetrics_1.json"]
    files = ["3_Step-300.ckpt.index", "3_Step-300.ckpt.data-00000-of-00001", "model_3.pb"]
    layout = dict((t, k) for k, t in droa.import_layout(src, ckpt, files, metrics, 1700000000))
    assert layout["model_metadata.json"] == layout["model/model_metadata.json"]
    assert layout["ip/hyperparameters.json"] == "m/ip/hyperparameters.json"
    assert layout["reward_function.py"] == "m/reward_function.py"
    assert layout["metrics/TrainingMetrics_1.json"] == "m/metrics/TrainingMetrics_1.json"
    assert layout["metrics/training/training-1700000000.json"] == "m/metrics/TrainingMetrics.json"
    assert layout["model/model_3.pb"] == "m/model/model_3.pb"
    assert layout["model/.coach_checkpoint"] is None and layout["training_params.yaml"] is None
    written = droa.checkpoint_files(ckpt)
    assert written["model/.coach_checkpoint"] == b"3_Step-300.ckpt"  # no newline, as DRfC's
    assert json.loads(written["model/deepracer_checkpoints.json"]) == {
        "last_checkpoint": entry,
        "best_checkpoint": entry,
    }


def test_names_and_folders_droa_would_refuse_are_said_before_an_upload() -> None:
    assert droa.name_problem("rl-deepracer-sagemaker") is None
    assert droa.name_problem("my_model") and droa.name_problem("a" * 65)
    assert droa.name_problem("runs/1")
    assert droa.description_problem("My model 2") is None
    assert droa.description_problem("it's mine!")
    assert droa.folder_problem(["model_metadata.json", "reward_function.py"]) == (
        "missing required model files at its top: hyperparameters.json, training_params.yaml"
    )
    ok = ["model_metadata.json", "reward_function.py", "training_params.yaml"]
    assert droa.folder_problem([*ok, "ip/hyperparameters.json"]) is None
    assert not droa.uploaded("model/.DS_Store") and not droa.uploaded("logs.tar.gz")
    assert droa.uploaded("model/1_Step-1.ckpt.index")
    assert content_type("model/.coach_checkpoint") == "application/octet-stream"
    assert content_type("ip/done") == "text/plain"
    assert content_type("training_params.yaml") == "application/x-yaml"


def test_the_list_and_the_model_print_as_drfcs_commands_print_them() -> None:
    models = [
        {
            "modelId": "a1",
            "name": "old",
            "status": "READY",
            "trainingStatus": "COMPLETED",
            "createdAt": "2026-01-01T10:00:00.000Z",
        },
        {
            "modelId": "b2",
            "name": "new",
            "status": "IMPORTING",
            "trainingStatus": "COMPLETED",
            "createdAt": "2026-02-01T10:00:00.000Z",
        },
    ]
    lines = list(droa.table(droa.newest_first(models)))
    assert lines[0].split() == ["Model", "ID", "Name", "Status", "Training", "Created", "At"]
    assert lines[2].split()[:3] == ["b2", "new", "IMPORTING"] and "2026-02-01 10:00:00" in lines[2]
    assert list(droa.table([])) == ["No models found."]
    model = {
        "modelId": "b2",
        "name": "new",
        "fileSizeInBytes": 2048,
        "metadata": {
            "actionSpace": {
                "continous": {
                    "lowSpeed": 1,
                    "highSpeed": 3,
                    "lowSteeringAngle": -30,
                    "highSteeringAngle": 30,
                }
            },
            "rewardFunction": "def reward_function(params):\n    return 1.0",
        },
    }
    short = list(droa.details(model, verbose=False))
    assert "File Size             : 2.0 KB" in short and "Action Space" not in short
    full = list(droa.details(model, verbose=True))
    assert "  Speed range           : 1 – 3 m/s" in full and "    return 1.0" in full


def test_the_summary_is_the_mean_reward_and_progress_of_each_iteration() -> None:
    eps = [
        {"phase": "training", "reward_score": r, "completion_percentage": p}
        for r, p in [(1, 10), (3, 30), (5, 50), (7, 70)]
    ] + [{"phase": "evaluation", "reward_score": 100, "completion_percentage": 100}]
    lines = list(droa.summary({"metrics": eps}, 2))
    assert [ln.split() for ln in lines[1:]] == [
        ["0", "2", "2.00", "20.0"],
        ["1", "2", "6.00", "60.0"],
    ]
    assert list(droa.summary({"metrics": []}, 2)) == ["no training episodes in the model's metrics"]


def test_a_folders_top_hyperparameters_also_go_where_droa_reads_them(tmp_path) -> None:
    from drfleet.store.droa_import import from_folder

    for name in ("model_metadata.json", "reward_function.py", "training_params.yaml"):
        (tmp_path / name).write_text("x")
    (tmp_path / "hyperparameters.json").write_text('{"lr": 0.1}')
    (tmp_path / ".DS_Store").write_text("junk")
    files = dict(from_folder(tmp_path))
    assert files["ip/hyperparameters.json"] == files["hyperparameters.json"] == b'{"lr": 0.1}'
    assert ".DS_Store" not in files
    with pytest.raises(DrfleetError, match="missing required model files"):
        (tmp_path / "reward_function.py").unlink()
        from_folder(tmp_path)


def test_a_named_prefix_brings_its_own_metrics() -> None:
    """droa-import-model --model-prefix P reads P/metrics, not run.env's model's metrics."""
    values = {"DR_LOCAL_S3_METRICS_PREFIX": "run-model/metrics"}
    assert console.Source.of(values, "p").metrics_prefix == "p/metrics"
    assert console.Source.of(values, None).metrics_prefix == "run-model/metrics"


def test_keys_droa_refuses_are_dropped_from_the_cache(tmp_path, monkeypatch) -> None:
    from drfleet.store import droa_client

    s = droa.site("https://d", f"window.EnvironmentConfig = {json.dumps(ENV)};")
    creds = droa.Credentials("ASIA1", "secret", "token", datetime.now(timezone.utc))
    cache = tmp_path / droa.cache_name(s.identity_pool_id, "me")
    droa_client.save(tmp_path, cache, creds)
    session = droa_client.Session(s, creds, cache)
    monkeypatch.setattr(droa_client, "fetch", lambda *a, **k: (403, b'{"message": "expired"}'))
    with pytest.raises(DrfleetError, match="DRoA refused the request: expired"):
        session.call("GET", "/models")
    assert not cache.exists()

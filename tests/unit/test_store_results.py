"""The model commands' typed results: their --json documents hold to docs/schemas, and their
lines say what a user checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drfleet.store.results import CarFile, ConsoleUpload, Incremented, Transfer
from tests.conftest import schema_ok


def test_each_model_commands_result_renders_as_its_schema_says() -> None:
    out = Transfer("m-1", "models/m-1", 12, 3400)
    schema_ok("download-model", out.as_json())
    assert list(out.lines()) == ["12 files, 3400 bytes of m-1 in models/m-1"]
    back = Transfer("m-2", "models/m-1", 12, 3400, into_s3=True)
    schema_ok("import-model", back.as_json())
    assert back.as_json()["src"] == "models/m-1"
    up = ConsoleUpload("model_4", "s3://up/p/", ["p/model/a", "p/model/b"], True)
    schema_ok("upload-model", up.as_json())
    assert list(up.lines()) == [
        "checkpoint model_4: would copy 2 objects to s3://up/p/",
        "  p/model/a",
        "  p/model/b",
    ]
    car = CarFile("model_4", "carfile.tar.gz", 99, "s3://up/p/carfile.tar.gz")
    schema_ok("car-model", car.as_json())
    assert list(car.lines())[-1] == "uploaded to s3://up/p/carfile.tar.gz"
    inc = Incremented("m-1", "m-2", "run.env", {"DR_LOCAL_S3_MODEL_PREFIX": "m-2"}, 3, "b")
    schema_ok("increment-training", inc.as_json())
    assert list(inc.lines())[-1] == "deleted what s3://b/m-2/ held (3+ objects)"


def test_a_source_url_is_a_bucket_and_a_plain_prefix() -> None:
    import pytest

    from drfleet.errors import DrfleetError
    from drfleet.store.models import s3_url

    assert s3_url("s3://my-bucket/models/m-1/") == ("my-bucket", "models/m-1")
    for bad in ("my-bucket/m", "s3://my-bucket", "s3://b/../etc", "s3:///m"):
        with pytest.raises(DrfleetError, match="is not a model's S3 URL"):
            s3_url(bad)


def test_a_droa_import_renders_as_its_schema_says() -> None:
    from drfleet.store.results import DroaImported

    done = DroaImported("a1b2", "m-1", "s3://up/uploads/models/u/", ["reward_function.py"], 7)
    done.checkpoint, done.said = "3_Step-300.ckpt", ["TRACK_DIRECTION_CLOCKWISE=True"]
    schema_ok("droa-import-model", done.as_json())
    lines = list(done.lines())
    assert lines[:2] == [
        "checkpoint 3_Step-300.ckpt",
        "training_params.yaml: TRACK_DIRECTION_CLOCKWISE=True",
    ]
    assert "drfleet droa-get-model a1b2" in lines[-1]


def test_a_checkpoint_deleted_while_the_model_is_downloaded_is_said_not_a_traceback(
    tmp_path: Path,
) -> None:
    """A training run keeps its latest checkpoints only: one listed can be gone when read."""
    import boto3
    from moto import mock_aws

    from drfleet.store import models

    with mock_aws():
        real = boto3.client("s3", region_name="us-east-1")
        real.create_bucket(Bucket="bkt")
        for key in ("m/model/1_Step-1.ckpt.index", "m/model/2_Step-2.ckpt.index", "m/x.json"):
            real.put_object(Bucket="bkt", Key=key, Body=b"data")

        class Rotating:  # the trainer deletes checkpoint 1 just as it is asked for
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def get_object(self, **kw: Any) -> Any:
                if kw["Key"].endswith("1_Step-1.ckpt.index"):
                    real.delete_object(Bucket="bkt", Key=kw["Key"])
                return real.get_object(**kw)

        done = models.download(Rotating(), "bkt", "m", tmp_path / "out", lambda _: None)
    assert done.files == 2 and done.gone == ["m/model/1_Step-1.ckpt.index"]
    assert (tmp_path / "out" / "model" / "2_Step-2.ckpt.index").read_bytes() == b"data"
    assert not list((tmp_path / "out").rglob("*.part"))
    schema_ok("download-model", done.as_json())
    assert "1 objects were deleted while they were copied" in "\n".join(done.lines())

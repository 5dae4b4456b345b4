"""The model's way out, checked on a trained fleet: upload-model to a bucket standing in for
the user's AWS account, car-model, drfleet s3, and increment-training into the next run."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shlex
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import docker
import yaml

from tests.conftest import invoke, schema_ok
from tests.testbed import TestBed
from tests.testbed.drfc_run import PREFIX, s3
from tests.testbed.images import STANDIN_MINIO


@contextlib.contextmanager
def aws_account(tmp: Path) -> Iterator[tuple[Any, dict[str, str]]]:
    """An S3 API server on this machine standing in for AWS (the stand-in minio image), and
    the environment a user's AWS profile gives: ~/.aws/config and credentials files whose
    profile `up` names its endpoint_url, as the aws CLI and boto3 read them."""
    client = docker.from_env()
    c = client.containers.run(
        STANDIN_MINIO,
        detach=True,
        ports={"9000/tcp": ("127.0.0.1", None)},
        labels={"drfleet-test": "1"},
    )
    try:
        c.reload()
        port = c.attrs["NetworkSettings"]["Ports"]["9000/tcp"][0]["HostPort"]
        url = f"http://127.0.0.1:{port}"
        (tmp / "config").write_text(f"[profile up]\nregion = us-east-1\nendpoint_url = {url}\n")
        (tmp / "credentials").write_text(
            "[up]\naws_access_key_id = AKIDUPLOAD\naws_secret_access_key = upload-secret\n"
        )
        env = {
            "AWS_CONFIG_FILE": str(tmp / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "credentials"),
        }
        aws = boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="y",
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                aws.create_bucket(Bucket="console-bucket")
                break
            except Exception:
                assert time.monotonic() < deadline, "the stand-in AWS S3 did not start"
                time.sleep(0.3)
        yield aws, env
    finally:
        c.remove(force=True)


def body(client: Any, bucket: str, key: str) -> bytes:
    data: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return data


def keys(client: Any, bucket: str, prefix: str) -> list[str]:
    return sorted(
        o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    )


def check_checkpoint_layout(bed: TestBed, env_dir: Path) -> dict[str, Any]:
    """The trainer's model/ as training_worker.py leaves it; returns its checkpoint index."""
    run = s3(bed)
    model = [k[len(PREFIX) + 7 :] for k in keys(run, "bucket", f"{PREFIX}/model/")]
    index = json.loads(body(run, "bucket", f"{PREFIX}/model/deepracer_checkpoints.json"))
    best, last = index["best_checkpoint"]["name"], index["last_checkpoint"]["name"]
    assert (best, last) == ("0_Step-1000.ckpt", "1_Step-2000.ckpt"), index
    for name in (best, last):
        for ext in ("data-00000-of-00001", "index", "meta"):
            assert f"{name}.{ext}" in model
    assert {"model_0.pb", "model_1.pb", ".coach_checkpoint", "model_metadata.json"} <= set(model)
    assert body(run, "bucket", f"{PREFIX}/model/.coach_checkpoint") == last.encode()
    assert body(run, "bucket", f"{PREFIX}/model/model_metadata.json") == (
        (env_dir / "custom_files" / "model_metadata.json").read_bytes()
    )
    assert keys(run, "bucket", f"{PREFIX}/ip/hyperparameters.json")
    assert keys(run, "bucket", f"{PREFIX}/metrics/")  # the workers' TrainingMetrics.json
    return dict(index)


def check_upload_model(bed: TestBed, env_dir: Path, tmp: Path) -> None:
    """upload-model --checkpoint best into the stand-in AWS account: the console's layout,
    byte for byte from the run's S3; bad buckets and profiles are named, nothing copied."""
    index = check_checkpoint_layout(bed, env_dir)
    run_env = env_dir / "run.env"
    original = run_env.read_text()
    args = ("-i", str(bed.inventory), "--env-dir", str(env_dir))
    with aws_account(tmp) as (aws, env):
        try:
            run_env.write_text(
                original
                + "DR_UPLOAD_S3_BUCKET=no-such-bucket\nDR_UPLOAD_S3_PROFILE=up\n"
                + "DR_UPLOAD_S3_PREFIX=my-model-1\n"
            )
            missing = invoke("upload-model", *args, env=env)
            assert missing.code == 2, missing.stdout + missing.stderr
            assert "DR_UPLOAD_S3_BUCKET=no-such-bucket: the bucket does not exist" in missing.stderr
            assert keys(aws, "console-bucket", "") == []
            run_env.write_text(run_env.read_text().replace("no-such-bucket", "console-bucket"))
            with_up = run_env.read_text()
            run_env.write_text(
                with_up.replace("DR_UPLOAD_S3_PROFILE=up", "DR_UPLOAD_S3_PROFILE=nobody")
            )
            unknown = invoke("upload-model", *args, env=env)
            assert unknown.code == 2, unknown.stdout + unknown.stderr
            assert "DR_UPLOAD_S3_PROFILE=nobody: no such AWS profile" in unknown.stderr
            run_env.write_text(with_up)
            dry = invoke("upload-model", "--dry-run", "--json", *args, env=env)
            assert dry.code == 0 and dry.json["dry_run"] and keys(aws, "console-bucket", "") == []
            schema_ok("upload-model", dry.json)
            up = invoke("upload-model", "--checkpoint", "best", "--json", *args, env=env)
            assert up.code == 0, up.stdout[-2000:] + up.stderr
            schema_ok("upload-model", up.json)
        finally:
            run_env.write_text(original)
        best = index["best_checkpoint"]["name"]
        n = best.split("_")[0]
        t = "my-model-1"
        want = {
            f"{t}/model/{best}.data-00000-of-00001": f"{PREFIX}/model/{best}.data-00000-of-00001",
            f"{t}/model/{best}.index": f"{PREFIX}/model/{best}.index",
            f"{t}/model/{best}.meta": f"{PREFIX}/model/{best}.meta",
            f"{t}/model/model_{n}.pb": f"{PREFIX}/model/model_{n}.pb",
            f"{t}/model/model_metadata.json": f"{PREFIX}/model/model_metadata.json",
            f"{t}/model_metadata.json": f"{PREFIX}/model/model_metadata.json",
            f"{t}/reward_function.py": "custom_files/reward_function.py",
            f"{t}/ip/hyperparameters.json": f"{PREFIX}/ip/hyperparameters.json",
        }
        run = s3(bed)
        metrics = keys(run, "bucket", f"{PREFIX}/metrics/")  # one file per worker (rollout idx)
        assert f"{PREFIX}/metrics/TrainingMetrics_4.json" in metrics, metrics
        want.update({f"{t}/metrics/{k.rsplit('/', 1)[1]}": k for k in metrics})
        written = {
            f"{t}/model/.coach_checkpoint",
            f"{t}/model/deepracer_checkpoints.json",
            f"{t}/training_params.yaml",
        }
        assert keys(aws, "console-bucket", "") == sorted([*want, *written])
        for dst, src in want.items():
            assert body(aws, "console-bucket", dst) == body(run, "bucket", src), dst
        assert body(aws, "console-bucket", f"{t}/model/.coach_checkpoint").decode().strip() == best
        idx = json.loads(body(aws, "console-bucket", f"{t}/model/deepracer_checkpoints.json"))
        assert idx == {"best_checkpoint": index["best_checkpoint"]} | {
            "last_checkpoint": index["best_checkpoint"]
        }
        params = yaml.safe_load(body(aws, "console-bucket", f"{t}/training_params.yaml"))
        assert params["SAGEMAKER_SHARED_S3_BUCKET"] == "console-bucket"
        assert params["SAGEMAKER_SHARED_S3_PREFIX"] == t and params["WORLD_NAME"] == (
            "reInvent2019_track"
        )
        assert up.json["checkpoint"] == best
        check_download_from_s3(bed, env_dir, aws, env)


def check_download_from_s3(bed: TestBed, env_dir: Path, aws: Any, env: dict[str, str]) -> None:
    """download-model --source URL --target PREFIX --config (DRfC's dr-download-model -s -t
    -c): the model uploaded to the console's bucket comes back into the run's S3 byte for
    byte, its three config files into custom_files/; a target that holds a model and a
    source that is not one are refused, nothing copied."""
    run_env = env_dir / "run.env"
    original = run_env.read_text()
    custom = env_dir / "custom_files"
    kept = {p.name: p.read_bytes() for p in custom.iterdir() if p.is_file()}
    args = ("-i", str(bed.inventory), "--env-dir", str(env_dir), "--json")
    url = "s3://console-bucket/my-model-1"
    try:
        run_env.write_text(original + "DR_UPLOAD_S3_PROFILE=up\n")
        dry = invoke(
            "download-model",
            "--source",
            url,
            "--target",
            "from-console-1",
            "--dry-run",
            *args,
            env=env,
        )
        assert dry.code == 0 and dry.json["dry_run"], dry.stdout[-2000:] + dry.stderr
        run = s3(bed)
        assert keys(run, "bucket", "from-console-1/") == []
        copy = invoke(
            "download-model",
            "--source",
            url,
            "--target",
            "from-console-1",
            "--config",
            *args,
            env=env,
        )
        assert copy.code == 0, copy.stdout[-2000:] + copy.stderr
        schema_ok("download-model", copy.json)
        theirs = keys(aws, "console-bucket", "my-model-1/")
        got = keys(run, "bucket", "from-console-1/")
        assert got == sorted("from-console-1/" + k[len("my-model-1/") :] for k in theirs)
        for k in theirs:
            mine = "from-console-1/" + k[len("my-model-1/") :]
            assert body(run, "bucket", mine) == body(aws, "console-bucket", k), k
        for name, key in (
            ("reward_function.py", "reward_function.py"),
            ("model_metadata.json", "model/model_metadata.json"),
            ("hyperparameters.json", "ip/hyperparameters.json"),
        ):
            assert (custom / name).read_bytes() == body(aws, "console-bucket", f"my-model-1/{key}")
        again = invoke(
            "download-model", "--source", url, "--target", "from-console-1", *args, env=env
        )
        assert again.code == 2 and "already holds" in again.stderr, again.stderr
        nothing = invoke(
            "download-model",
            "--source",
            "s3://console-bucket/no-model",
            "--target",
            "x",
            *args,
            env=env,
        )
        assert nothing.code == 2 and "is not a model" in nothing.stderr, nothing.stderr
        assert keys(run, "bucket", "x/") == []
        # a DRfC minio's model: its profile (keys, no endpoint_url, as DRfC's `minio` profile
        # is) and its address given; DR_UPLOAD_S3_PROFILE is then not read at all
        run_env.write_text(original + "DR_UPLOAD_S3_PROFILE=nobody\n")
        creds = Path(env["AWS_SHARED_CREDENTIALS_FILE"])
        creds.write_text(
            creds.read_text()
            + "[drfc-minio]\naws_access_key_id = AKIDUPLOAD\n"
            + "aws_secret_access_key = upload-secret\n"
        )
        reader = ("--source-profile", "drfc-minio", "--source-endpoint", aws.meta.endpoint_url)
        moved = invoke(
            "download-model", "--source", url, "--target", "from-drfc-minio", *reader, *args,
            env=env,
        )  # fmt: skip
        assert moved.code == 0, moved.stdout[-2000:] + moved.stderr
        assert keys(run, "bucket", "from-drfc-minio/") == sorted(
            "from-drfc-minio/" + k[len("my-model-1/") :] for k in theirs
        )
    finally:
        run_env.write_text(original)
        for name, data in kept.items():
            (custom / name).write_bytes(data)


def check_car_model(bed: TestBed, env_dir: Path, tmp: Path) -> None:
    """car-model: a tar.gz holding the best checkpoint's frozen graph and the metadata."""
    out = tmp / "carfile.tar.gz"
    args = ("-i", str(bed.inventory), "--env-dir", str(env_dir), "--json")
    car = invoke("car-model", "--out", str(out), *args)
    assert car.code == 0, car.stdout[-2000:] + car.stderr
    schema_ok("car-model", car.json)
    run = s3(bed)
    with tarfile.open(out) as tar:
        assert sorted(tar.getnames()) == ["agent/model.pb", "model_metadata.json"]
        graph = tar.extractfile("agent/model.pb").read()  # type: ignore[union-attr]
        meta = tar.extractfile("model_metadata.json").read()  # type: ignore[union-attr]
    assert graph == body(run, "bucket", f"{PREFIX}/model/model_0.pb")  # the best: iteration 0
    assert meta == body(run, "bucket", f"{PREFIX}/model/model_metadata.json")
    assert car.json["checkpoint"] == "0_Step-1000.ckpt"


def check_increment_training(bed: TestBed, env_dir: Path) -> None:
    """increment-training --checkpoint best, then train: the new run's trainer loads the
    old model's best checkpoint (the stand-in reports what it loaded, by digest)."""
    run_env = env_dir / "run.env"
    original = run_env.read_text()
    args = ("-i", str(bed.inventory), "--env-dir", str(env_dir))
    try:
        inc = invoke("increment-training", "--checkpoint", "best", "--json", *args)
        assert inc.code == 0, inc.stdout + inc.stderr
        schema_ok("increment-training", inc.json)
        assert (inc.json["from"], inc.json["to"]) == (PREFIX, f"{PREFIX}-1")
        text = run_env.read_text()
        assert f"DR_LOCAL_S3_MODEL_PREFIX={PREFIX}-1\n" in text
        assert f"DR_LOCAL_S3_PRETRAINED_PREFIX={PREFIX}\n" in text
        assert "DR_LOCAL_S3_PRETRAINED=True\n" in text
        assert "DR_LOCAL_S3_PRETRAINED_CHECKPOINT=best\n" in text
        assert (env_dir / "run.env.bak").read_text() == original
        train = invoke("train", *args, "--json")
        assert train.code == 0, train.stdout[-2000:] + train.stderr
        run = s3(bed)
        deadline = time.monotonic() + 120
        while not keys(run, "bucket", f"{PREFIX}-1/standin/trainer.json"):
            assert time.monotonic() < deadline, "the incremented run's trainer never started"
            time.sleep(1)
        loaded = json.loads(body(run, "bucket", f"{PREFIX}-1/standin/trainer.json"))["pretrained"]
        name = "0_Step-1000.ckpt"
        digest = hashlib.sha256(
            b"".join(
                body(run, "bucket", f"{PREFIX}/model/{name}.{ext}")
                for ext in ("data-00000-of-00001", "index", "meta")
            )
        ).hexdigest()
        assert loaded == {"prefix": PREFIX, "checkpoint": "best", "name": name, "digest": digest}
    finally:
        run_env.write_text(original)
        (env_dir / "run.env.bak").unlink(missing_ok=True)
        stop = invoke("stop", *args)
        assert stop.code == 0, stop.stderr


LIST = (
    "import boto3, os; c = boto3.client('s3'); "
    "print(os.environ['AWS_ENDPOINT_URL']); "
    "print(*[o['Key'] for o in c.list_objects_v2(Bucket=os.environ['DR_LOCAL_S3_BUCKET'], "
    "Prefix='rl-deepracer-sagemaker/model/')['Contents']], sep='\\n')"
)


def check_s3_shell(bed: TestBed, env_dir: Path) -> None:
    """drfleet s3 (DRfC's dr-local-aws): a command whose environment reaches the run's minio
    through SSH, with its keys (aws CLI and boto3 read AWS_ENDPOINT_URL); the keys are not
    printed."""
    code = f"{sys.executable} -c {shlex.quote(LIST)}"
    run = invoke("s3", "--command", code, "-i", str(bed.inventory), "--env-dir", str(env_dir))
    assert run.code == 0, run.stdout[-2000:] + run.stderr
    lines = run.stdout.split()
    assert lines[0].startswith("http://127.0.0.1:") and lines[0] != "http://127.0.0.1:9000"
    assert f"{PREFIX}/model/deepracer_checkpoints.json" in lines
    secret = json.loads((env_dir / ".drfleet" / "minio-credentials.json").read_text())
    assert secret["secret_key"] not in run.stdout + run.stderr
    failed = invoke(
        "s3", "--command", "exit 3", "-i", str(bed.inventory), "--env-dir", str(env_dir)
    )
    assert failed.code == 3  # the command's own exit status
    # --json: the command's output and status in one document, the run's keys masked
    shown = f"{code} && echo $AWS_SECRET_ACCESS_KEY"
    doc = invoke(
        "s3", "--command", shown, "-i", str(bed.inventory), "--env-dir", str(env_dir), "-j"
    )
    assert doc.code == 0 and doc.json["ok"] and doc.json["exit"] == 0, doc.stdout + doc.stderr
    schema_ok("s3", doc.json)
    assert f"{PREFIX}/model/deepracer_checkpoints.json" in doc.json["stdout"].split()
    assert secret["secret_key"] not in doc.stdout and "***" in doc.json["stdout"]

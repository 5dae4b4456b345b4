"""The droa-* commands on a trained fleet, against the DeepRacer on AWS stand-in
(droa_standin.py): logins DRoA refuses are named; the model trained on the bed is imported
from the run's S3, becomes READY and is listed, its metrics summed up, its logs and its
virtual model downloaded, then deleted."""

from __future__ import annotations

import io
import json
import stat
import tarfile
import time
from pathlib import Path

import yaml

from tests.conftest import invoke, schema_ok
from tests.testbed import TestBed
from tests.testbed.drfc_run import PREFIX, s3
from tests.testbed.droa_standin import INVITED, NOGROUP, PASSWORD, USER, droa


def check_droa(bed: TestBed, env_dir: Path, tmp: Path) -> None:
    system_env = env_dir / "system.env"
    original = system_env.read_text()
    fleet = ("-i", str(bed.inventory), "--env-dir", str(env_dir))
    with droa(tmp) as d:
        env = d["env"]

        def login_as(user: str, password: str, *extra: str) -> str:
            run = invoke(
                "droa-list-models", "--url", d["url"], "--username", user,
                "--password", password, *extra, env=env,
            )  # fmt: skip
            assert run.code == 2, run.stdout + run.stderr
            return run.stderr

        said = login_as(*INVITED)
        assert "still has DRoA's temporary password" in said and d["url"] in said
        said = login_as(*NOGROUP)
        assert "gave nogroup@example.com no keys" in said and "dr-racers" in said
        said = login_as(USER, "Wrong-pass-1!")
        assert "DRoA refused the login of racer@example.com" in said
        wrong = invoke(
            "droa-list-models", "--url", d["url"] + "/app", "--username", USER, env=env
        )  # CloudFront answers any path with the app's page
        assert wrong.code == 2 and f"{d['url']}/app/env.js: no EnvironmentConfig" in wrong.stderr
        home = Path(env["HOME"])
        assert not (home / ".droa-cache").exists() or not list((home / ".droa-cache").iterdir())
        try:
            system_env.write_text(original + f"DR_DROA_URL={d['url']}\nDR_DROA_USERNAME={USER}\n")
            args = ("--env-dir", str(env_dir))
            mute = invoke("droa-list-models", *args, env=env)  # no terminal, no password
            assert mute.code == 2 and "there is no terminal to ask on" in mute.stderr
            first = invoke(
                "droa-list-models", *args, "--password", "-", env=env, stdin=PASSWORD + "\n"
            )
            assert first.code == 0 and "No models found." in first.stdout, first.stderr
            cache = home / ".droa-cache"
            files = list(cache.iterdir())
            assert stat.S_IMODE(cache.stat().st_mode) == 0o700 and len(files) == 1
            assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
            assert PASSWORD not in files[0].read_text()  # keys only, never the password
            bad = invoke("droa-import-model", *fleet, "--model-name", "my_model", env=env)
            assert bad.code == 2 and "--model-name 'my_model'" in bad.stderr, bad.stderr
            up = invoke("droa-import-model", *fleet, "--best", "--json", env=env)
            assert up.code == 0, up.stdout[-2000:] + up.stderr
            schema_ok("droa-import-model", up.json)
            model_id = up.json["model_id"]
            assert up.json["name"] == PREFIX  # the prefix, as DRfC names it
            deadline = time.monotonic() + 60
            while True:  # the import finishes in the background, as DRoA's does
                got = invoke("droa-get-model", model_id, *args, "--json", env=env)
                assert got.code == 0, got.stderr
                if got.json["model"]["status"] != "IMPORTING":
                    break
                assert time.monotonic() < deadline
                time.sleep(1)
            model = got.json["model"]
            assert model["status"] == "READY", model
            assert model["trainingConfig"]["trackConfig"]["trackId"] == "reInvent2019_track"
            assert "def reward_function" in model["metadata"]["rewardFunction"]
            listed = invoke("droa-list-models", *args, env=env)
            assert f"{model_id}  {PREFIX}" in listed.stdout and "READY" in listed.stdout
            text = invoke("droa-get-model", model_id, *args, "-v", "--summary", env=env)
            assert text.code == 0, text.stderr
            assert "Track                 : reInvent2019_track" in text.stdout
            assert "Reward Function" in text.stdout and "iteration  episodes" in text.stdout
            logs = invoke("droa-download-logs", model_id, *args, "-o", str(tmp / "t.tgz"),
                          "--json", env=env)  # fmt: skip
            assert logs.code == 0, logs.stderr
            schema_ok("droa-download-logs", logs.json)
            with tarfile.open(tmp / "t.tgz") as tar:
                assert any("/metrics/training/training-" in n for n in tar.getnames())
            vm = invoke("droa-download-logs", model_id, *args, "--asset-type", "VIRTUAL_MODEL",
                        "-o", str(tmp / "vm.tgz"), env=env)  # fmt: skip
            assert vm.code == 0 and "DRoA is packaging it" in vm.stderr, vm.stderr
            check_what_droa_got(bed, tmp / "vm.tgz", up.json)
            gone = invoke("droa-delete-model", model_id, *args, "--yes", "--json", env=env)
            assert gone.code == 0 and gone.json["status"] == "DELETING", gone.stderr
            again = invoke("droa-delete-model", model_id, *args, "--yes", env=env)
            assert again.code == 2 and "only READY or ERROR" in again.stderr, again.stderr
        finally:
            system_env.write_text(original)


def check_what_droa_got(bed: TestBed, archive: Path, imported: dict[str, object]) -> None:
    """The virtual model DRoA packaged: the best checkpoint's files byte for byte from the
    run's S3, and a training_params.yaml that names the upload and DRoA's track."""
    run = s3(bed)
    index = json.loads(
        run.get_object(Bucket="bucket", Key=f"{PREFIX}/model/deepracer_checkpoints.json")[
            "Body"
        ].read()
    )
    best = index["best_checkpoint"]["name"]
    assert imported["checkpoint"] == best
    with tarfile.open(archive) as tar:
        members = {m.name.split("/", 1)[1]: m for m in tar.getmembers()}
        art = "sagemaker-artifacts/"
        for ext in (".index", ".meta", ".data-00000-of-00001"):
            got = tar.extractfile(members[f"{art}model/{best}{ext}"])
            want = run.get_object(Bucket="bucket", Key=f"{PREFIX}/model/{best}{ext}")
            assert got is not None and got.read() == want["Body"].read()
        coach = tar.extractfile(members[f"{art}model/.coach_checkpoint"])
        assert coach is not None and coach.read() == best.encode()
        raw = tar.extractfile(members[f"{art}training_params.yaml"])
        assert raw is not None
        params = yaml.safe_load(io.BytesIO(raw.read()))
    prefix = str(imported["uploaded_to"]).split("/", 3)[3].rstrip("/")
    assert params["SAGEMAKER_SHARED_S3_PREFIX"] == prefix
    assert params["WORLD_NAME"] == "reInvent2019_track"
    assert params["TRACK_DIRECTION_CLOCKWISE"] is True

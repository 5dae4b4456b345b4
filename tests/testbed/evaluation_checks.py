"""evaluate on a fleet that trains (issue 14): the evaluation goes on the host with room while
the workers train, its params are what DRfC's evaluation prepare-config.py writes, its
results are what the stand-in evaluated, it mounts what the workers mount, its video is a tile
of the viewer while it runs, and training is untouched throughout: the same containers, and
every iteration gets every slot's share."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.conftest import REPO, invoke, schema_ok
from tests.testbed import TestBed
from tests.testbed.drfc_run import PREFIX, container_ids, containers, s3
from tests.testbed.test_viewer import frames, free_port, get


@contextlib.contextmanager
def _viewer(args: tuple[str, ...]) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", "viewer", "--port", str(port), "--json", *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert json.loads(proc.stdout.readline())["url"]  # type: ignore[union-attr]
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def check_evaluation(bed: TestBed, env_dir: Path, goes_on: Callable[[], None]) -> None:
    from drfleet.drfc import config, eval_params, params

    args = ("--inventory", str(bed.inventory), "--env-dir", str(env_dir))
    ids = container_ids(bed)
    with _viewer(args) as base:
        run = subprocess.Popen(
            [sys.executable, "-m", "invoke", "evaluate", "--wait", "--timeout", "180", "--json",
             *args],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:  # while it evaluates, its video is a tile of the viewer's page, through SSH
            deadline = time.monotonic() + 60
            while True:
                shown = [w for w in json.loads(get(base + "/api/workers")) if w["key"] == "eval"]
                if shown and shown[0]["state"] == "running":
                    break
                assert time.monotonic() < deadline and run.poll() is None, shown
                time.sleep(0.3)
            while True:  # running is the container; its video server starts a moment later
                try:
                    if frames(f"{base}/stream/eval?topic=kvs_stream&width=320", count=2) >= 2:
                        break
                except (OSError, http.client.HTTPException):
                    pass
                assert time.monotonic() < deadline and run.poll() is None, "no eval video"
                time.sleep(0.3)
            out, err = run.communicate(timeout=240)
        finally:
            if run.poll() is None:
                run.kill()
    assert run.returncode == 0, out[-2000:] + err
    done = json.loads(out)
    schema_ok("evaluate", done)
    assert shown[0]["host"] == done["host"] and shown[0]["role"] == "evaluation"
    host = done["host"]
    assert done["trials"] == 3 and done["warnings"] == []  # DR_EVAL_NUMBER_OF_TRIALS: template
    # the stand-in's laps: odd trials complete in 10 s + 250 ms per trial, even ones off track
    assert [(r["trial"], r["status"], r["lap_time"]) for r in done["rows"]] == [
        (1, "Lap complete", 10.25),
        (2, "Off track", 10.5),
        (3, "Lap complete", 10.75),
    ]
    assert done["summary"]["laps_completed"] == 2 and done["summary"]["best_lap_time"] == 10.25
    # the eval params: what eval_params (byte for byte DRfC's, tests/unit/test_evaluation.py)
    # gives for these files at the moment in the metrics key
    client = s3(bed)
    body = client.get_object(Bucket="bucket", Key=done["params"])["Body"].read().decode()
    found = re.search(r"evaluation-(\d{14})\.json$", done["metrics"])
    assert found, done["metrics"]
    now = time.mktime(time.strptime(found.group(1), "%Y%m%d%H%M%S"))
    assert body == params.dump(eval_params.params(config.load(env_dir, environ={}), now))
    report = json.loads(
        client.get_object(Bucket="bucket", Key=f"{PREFIX}/standin/evaluation.json")["Body"].read()
    )
    index = json.loads(
        client.get_object(Bucket="bucket", Key=f"{PREFIX}/model/deepracer_checkpoints.json")[
            "Body"
        ].read()
    )
    assert report["checkpoint"] == "last" and report["trials"] == 3
    assert report["name"].endswith(".ckpt") and index["last_checkpoint"]["name"].endswith(".ckpt")
    spec = json.loads(bed.exec(host, "docker inspect drfleet-eval"))[0]
    mounts = {m["Destination"]: m["Source"] for m in spec["Mounts"]}  # as a worker's
    assert mounts["/scripts"].startswith("/var/lib/drfleet/files/"), mounts
    assert bed.exec(host, f"cat {mounts['/scripts']}/alter_environment_1.sh") == "echo altered\n"
    assert spec["Config"]["Entrypoint"] == ["/bin/bash", "-c"]
    assert spec["Config"]["Cmd"] == ["/opt/ml/code/run.sh run evaluation.launch.py"]
    env = dict(e.split("=", 1) for e in spec["Config"]["Env"])
    assert env["S3_YAML_NAME"] == "evaluation_params.yaml" and env["ROLLOUT_IDX"] == "0"
    assert env["MODEL_S3_PREFIX"] == PREFIX and env["S3_ENDPOINT_URL"] == "http://minio:9000"
    # training untouched: the same containers, and it goes on
    with_eval = container_ids(bed)
    assert {n: i for n, i in with_eval.items() if n != "drfleet-eval"} == ids
    goes_on()
    # train again (the same run, converged) keeps the evaluation on its host
    converged = invoke("train", *args, "--json")
    assert converged.code == 0 and converged.json["resumed"], converged.stderr
    assert container_ids(bed) == with_eval
    again = invoke("evaluate", "--results", "--json", *args)
    assert again.code == 0 and again.json["rows"] == done["rows"], again.stderr
    schema_ok("evaluate", again.json)
    table = invoke("evaluate", "--results", *args)
    assert "2 of 3 laps completed, best 10.250s" in table.stdout, table.stdout + table.stderr
    stop = invoke("evaluate", "--stop", "--json", *args)
    assert stop.code == 0 and stop.json == {"stopped": [host]}, stop.stdout + stop.stderr
    schema_ok("evaluate", stop.json)
    assert "drfleet-eval" not in containers(bed)[host]
    assert container_ids(bed) == ids
    # an evaluation that dies is said at once with its exit status, and not run again (DRfC's
    # compose files never restart it); training goes on. This one evaluates a clone (-c):
    # the model copied to <prefix>-E inside the bucket first
    run = subprocess.Popen(
        [sys.executable, "-m", "invoke", "evaluate", "--wait", "--clone", "--host", host, *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "running" not in bed.exec(
            host, "docker inspect -f '{{.State.Status}}' drfleet-eval 2>/dev/null || true"
        ):
            assert time.monotonic() < deadline and run.poll() is None, run.communicate()
            time.sleep(0.3)
        env = json.loads(bed.exec(host, "docker inspect -f '{{json .Config.Env}}' drfleet-eval"))
        assert f"MODEL_S3_PREFIX={PREFIX}-E" in env
        copied = client.get_object(
            Bucket="bucket", Key=f"{PREFIX}-E/model/deepracer_checkpoints.json"
        )
        assert json.loads(copied["Body"].read())["last_checkpoint"]["name"].endswith(".ckpt")
        bed.exec(host, "docker kill drfleet-eval")
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 2 and "ended (exit status 137)" in err, out + err
    assert bed.exec(host, "docker inspect -f '{{.State.Status}}' drfleet-eval").strip() == "exited"
    assert invoke("evaluate", "--stop", *args).code == 0
    assert container_ids(bed) == ids

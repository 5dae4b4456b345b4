"""Log analysis on the shared fleet (DRfC's dr-start-loganalysis): the Jupyter image put on the
trainer from this controller, every worker host's logs collected where the container sees
them, the run's S3 reached with the profile the notebooks name, Jupyter on the host's
loopback alone and forwarded here with its token, the notebooks' folder kept after --stop.
The image is the stand-in of tests/testbed/analysis: the real JupyterLab from PyPI."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import REPO, invoke, schema_ok
from tests.testbed import TestBed
from tests.testbed.drfc_run import PREFIX, containers

NAME = "drfleet-analysis"


def _api(base: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    """Jupyter's REST API as the lab's file browser calls it (token in the header)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{base}{path}", data=data, method="PUT" if data else "GET")
    req.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


def check_log_analysis(bed: TestBed, inv: str, env_dir: Path, planned: dict[int, Any]) -> None:
    worker_hosts = {w["host"] for w in planned.values()}
    args = ["log-analysis", "-i", inv, "--env-dir", str(env_dir), "--images-from", "controller"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", *args, "-j"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()  # type: ignore[union-attr]
        if first.strip() == "{":  # a document, not a line: the command failed
            raise AssertionError(first + proc.stdout.read())  # type: ignore[union-attr]
        line = json.loads(first)
        schema_ok("log-analysis", line)
        assert line["host"] == "h1" and line["running"], line
        # every other worker host's logs came (h1's own are where the container looks)
        got = line["collected"]
        assert set(got) == {"h2", "h3"}, got
        for host in worker_hosts - {"h1"}:
            assert isinstance(got[host], int) and got[host] > 0, got
        url = urllib.parse.urlsplit(line["url"])
        assert url.hostname == "127.0.0.1" and url.port == line["port"]
        token = urllib.parse.parse_qs(url.query)["token"][0]
        base = f"http://127.0.0.1:{line['port']}"
        assert _api(base, "/api/contents", "wrong")[0] == 403
        code, listing = _api(base, f"/api/contents/logs/robomaker/{PREFIX}", token)
        assert code == 200, code
        launches = [
            e["name"] for e in listing["content"] if e["type"] == "directory"
        ]  # ros2 launch's folders, one per simulation started, from every host
        assert len(launches) >= len(planned), launches
        code, one = _api(base, f"/api/contents/logs/robomaker/{PREFIX}/{launches[0]}", token)
        assert code == 200 and "launch.log" in {e["name"] for e in one["content"]}
        # the notebooks' folder is the host's, and the image's user writes it
        note = {"type": "notebook", "content": {"cells": [], "metadata": {}, "nbformat": 4,
                                                 "nbformat_minor": 5}}  # fmt: skip
        assert _api(base, "/api/contents/analysis/mine.ipynb", token, note)[0] == 201
    finally:
        proc.terminate()
        proc.wait(30)
    listening = bed.exec("h1", "ss -Htln 'sport = :8888'")
    local = [x.split()[3] for x in listening.splitlines() if x.strip()]
    assert local == ["127.0.0.1:8888"], listening  # Jupyter on loopback, nowhere else
    # the run's S3 as Training_analysis.py reads it: PROFILE='minio',
    # S3_ENDPOINT_URL='http://minio:9000' (S3FileHandler's boto3 session), and awscli with the
    # profile alone (its endpoint_url from ~/.aws/config)
    listed = bed.exec(
        "h1",
        f'docker exec -u ubuntu {NAME} python -c "import boto3; s3 = boto3.Session('
        "profile_name='minio').client('s3', endpoint_url='http://minio:9000'); print(sorted("
        f"o['Key'] for o in s3.list_objects_v2(Bucket='bucket', Prefix='{PREFIX}/model/')"
        "['Contents']))\"",
    )
    assert f"{PREFIX}/model/model_metadata.json" in listed, listed
    cli = bed.exec("h1", f"docker exec -u ubuntu {NAME} aws --profile minio s3 ls s3://bucket/")
    assert f"PRE {PREFIX}/" in cli, cli
    modes = bed.exec("h1", "stat -c '%a %u %n' /var/lib/drfleet/analysis-aws/credentials")
    assert modes.startswith("600 1000 "), modes
    again = invoke("log-analysis", "-i", inv, "--env-dir", str(env_dir), "--collect", "-j")
    assert again.code == 0, again.stderr  # collecting again overwrites what came before
    assert all(isinstance(n, int) for n in again.json["collected"].values()), again.json
    stop = invoke("log-analysis", "-i", inv, "--env-dir", str(env_dir), "--stop", "-j")
    assert stop.code == 0 and stop.json == {"host": "h1", "running": False}, stop.stderr
    assert NAME not in containers(bed)["h1"]
    assert bed.exec("h1", "ls /var/lib/drfleet/analysis").split() == ["mine.ipynb"]
    assert "drfleet-minio" in containers(bed)["h1"]

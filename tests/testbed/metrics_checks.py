"""The metrics stack on the shared fleet (DRfC's dr-start-metrics): started before training,
fed by every worker over the overlay while training runs, its dashboard's data source read
through Grafana as a browser would, and ended. The images are Debian's InfluxDB and the
stand-ins of tests/testbed/metrics, under the tags DRfC's compose file names."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import REPO, invoke, schema_ok
from tests.testbed import TestBed
from tests.testbed.drfc_run import PREFIX, containers

STACK = {"drfleet-telegraf", "drfleet-influxdb", "drfleet-grafana"}


def start_metrics(bed: TestBed, inv: str, env_dir: Path) -> None:
    """`drfleet metrics --detach`: the stack runs on the trainer's host (h1), Grafana on its
    loopback alone."""
    run = invoke("metrics", "-i", inv, "--env-dir", str(env_dir), "--detach", "--json")
    assert run.code == 0, run.stdout[-2000:] + run.stderr
    schema_ok("metrics", run.json)
    assert run.json["host"] == "h1" and run.json["running"]
    assert set(containers(bed)["h1"]) >= STACK
    listening = bed.exec("h1", "ss -Htln 'sport = :3000'")
    local = [line.split()[3] for line in listening.splitlines() if line.strip()]
    assert local == ["127.0.0.1:3000"], listening  # Grafana on loopback, nowhere else


def _second_env_dir_takes_the_running_password(
    inv: str, env_dir: Path, url: str, password: str
) -> None:
    """Another env dir's `metrics` (a second run's) finds Grafana running and takes its
    password, so the first env dir's file stays true and Grafana keeps answering it."""
    other = Path(tempfile.mkdtemp(prefix="second-", dir=env_dir.parent))
    for name in ("system.env", "run.env"):
        shutil.copy(env_dir / name, other / name)
    run = invoke("metrics", "-i", inv, "--env-dir", str(other), "--detach", "--json")
    assert run.code == 0, run.stdout[-2000:] + run.stderr
    assert password not in run.stdout + run.stderr
    assert json.loads(Path(run.json["credentials"]).read_text())["password"] == password
    assert _get(f"{url}/api/search?query=DeepRacer", password)[0] == 200


def _get(url: str, password: str | None) -> tuple[int, Any]:
    req = urllib.request.Request(url)
    if password is not None:
        token = base64.b64encode(f"admin:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def check_metrics(bed: TestBed, inv: str, env_dir: Path, workers: int) -> None:
    """Grafana forwarded here (`drfleet metrics`, one JSON line); its provisioned dashboard's
    reward query, run through the data source as Grafana runs it, has every worker's
    episodes; a wrong password is refused; `--stop` ends the stack and nothing else."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", "metrics", "-i", inv, "--env-dir", str(env_dir), "-j"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
        schema_ok("metrics", line)
        url = line["url"]
        password = json.loads(Path(line["credentials"]).read_text())["password"]
        assert password not in json.dumps(line)  # the file is named, the password never said
        assert oct(Path(line["credentials"]).stat().st_mode & 0o777) == "0o600"
        assert _get(f"{url}/api/search", "wrong")[0] == 401
        code, found = _get(f"{url}/api/search?query=DeepRacer", password)
        assert code == 200 and [d["uid"] for d in found] == ["drfleet-training"], found
        _, board = _get(f"{url}/api/dashboards/uid/drfleet-training", password)
        target = board["dashboard"]["panels"][0]["targets"][0]
        uid = target["datasource"]["uid"]
        _, source = _get(f"{url}/api/datasources/uid/{uid}", password)
        assert (source["type"], source["url"]) == ("influxdb", "http://influxdb:8086"), source
        q = (
            target["query"]
            .replace("$timeFilter", "time > now() - 1h")
            .replace("$__interval", "1s")
            .replace("$model", PREFIX)
        )
        # the database named as Grafana's InfluxQL client names it: the data source's own
        args = urllib.parse.urlencode({"db": source["database"], "q": q})
        proxy = f"{url}/api/datasources/proxy/uid/{uid}/query?{args}"
        deadline = time.monotonic() + 90
        while True:
            code, got = _get(proxy, password)
            series = (got.get("results") or [{}])[0].get("series") or []
            seen = {s["tags"]["worker"] for s in series}
            if seen == {str(i) for i in range(workers)}:
                break
            assert time.monotonic() < deadline, (code, got)
            time.sleep(2)
        for s in series:
            assert s["values"] and all(v[1] > 0 for v in s["values"]), s  # rewards came
        _second_env_dir_takes_the_running_password(inv, env_dir, url, password)
    finally:
        proc.kill()
        proc.wait()
    # ended from an env dir that never started it: no password is read or written there
    elsewhere = Path(tempfile.mkdtemp(prefix="stopper-", dir=env_dir.parent))
    run = invoke("metrics", "-i", inv, "--env-dir", str(elsewhere), "--stop", "--json")
    assert run.code == 0 and run.json["running"] is False, run.stdout + run.stderr
    assert run.json["credentials"] is None
    assert not (elsewhere / ".drfleet" / "grafana-credentials.json").exists()
    assert not STACK & set(containers(bed)["h1"])
    assert bed.exec("h1", "ls /var/lib/drfleet/metrics/influxdb").split()  # data kept

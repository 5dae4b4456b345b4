"""invoke viewer on a training fleet, checked in a real browser (headless Chromium, driven
over the DevTools protocol so one page can be watched while a worker goes down and back)."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from drfleet.viewer import stream_path
from tests.conftest import REPO, invoke
from tests.testbed import TestBed
from tests.testbed.drfc_run import PREFIX, s3, write_drfc

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, timeout: float = 10) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return bytes(r.read())


def frames(url: str, count: int = 2, timeout: float = 15) -> int:
    """How many JPEG frames of a multipart MJPEG stream arrive (stops at `count`)."""
    seen = 0
    with urllib.request.urlopen(url, timeout=timeout) as r:
        assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        buf = b""
        deadline = time.monotonic() + timeout
        while seen < count and time.monotonic() < deadline:
            buf += r.read1(65536)
            while b"\xff\xd8" in buf:  # JPEG start of image
                seen += 1
                buf = buf[buf.index(b"\xff\xd8") + 2 :]
    return seen


def part_topic(url: str) -> str:
    """The topic the stand-in names in the stream's first part (X-Standin-Topic): the viewer
    passes a worker's parts on under headers of its own."""
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.headers["Content-Type"] == "multipart/x-mixed-replace;boundary=boundarydonotcross"
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += r.read1(4096)
    head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    return next(x.split(":", 1)[1].strip() for x in head.split("\r\n") if x.startswith("X-Standin"))


@pytest.fixture(scope="module")
def viewer(
    fleet: tuple[TestBed, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestBed, str, str]]:
    """The training tests' provisioned fleet, h1 and h2 of it (h3 idle), 3 workers."""
    bed, _ = fleet
    env_dir = write_drfc(  # trains until stopped: the plot must be seen to grow
        tmp_path_factory.mktemp("drfc"),
        3,
        {2: "Monaco", 3: "Bowtie_track"},
        6,
        {"standin_iterations": 100000, "standin_train_seconds": 1},
    )
    system = env_dir / "system.env"  # no kvs_stream topic: the viewer must fall back
    system.write_text(
        system.read_text()
        .replace("DR_CAMERA_KVS_ENABLE=True", "DR_CAMERA_KVS_ENABLE=False")
        .replace("DR_GUI_ENABLE=False", "DR_GUI_ENABLE=True")  # VNC, reached with `invoke vnc`
    )
    path = bed.write_inventory(
        tmp_path_factory.mktemp("vinv") / "inventory.yml",
        host_vars={"h2": {"publish_address": "0.0.0.0"}},
        worker_vcpus=1,
        trainer_vcpus=1,
    )
    doc = yaml.safe_load(path.read_text())
    del doc["all"]["hosts"]["h3"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    inv = str(path)
    assert invoke("train", "--inventory", inv, "--env-dir", str(env_dir), "--wipe").code == 0
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "invoke",
            "viewer",
            "-i",
            inv,
            "--port",
            str(port),
            "--json",
            "--env-dir",
            str(env_dir),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        ready = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
        assert ready["url"] == base + "/" and len(ready["workers"]) == 3, ready
        deadline = time.monotonic() + 20
        while True:
            try:
                get(base + "/")
                break
            except OSError:
                assert time.monotonic() < deadline, proc.stdout.read1(4096)  # type: ignore[union-attr]
                time.sleep(0.2)
        yield bed, base, inv
    finally:
        proc.terminate()
        proc.wait(10)
        invoke("stop", "--inventory", inv)


def test_page_lists_every_worker_and_streams_come_through_ssh(
    viewer: tuple[TestBed, str, str],
) -> None:
    _bed, base, _inv = viewer
    workers = json.loads(get(base + "/api/workers"))
    assert [(w["slot"], w["world"], w["state"]) for w in workers] == [
        (1, "reInvent2019_track", "running"),
        (2, "Monaco", "running"),
        (3, "Bowtie_track", "running"),
    ]
    for w in workers:
        assert frames(f"{base}/stream/{w['slot']}?topic=kvs_stream&quality=60&width=320") >= 2
        assert w["topics"] == ["main_camera", "camera"]  # DR_CAMERA_KVS_ENABLE=False
        # fell back to a topic that exists
        assert part_topic(f"{base}/stream/{w['slot']}?topic=kvs_stream") == "main_camera"
        assert part_topic(f"{base}/stream/{w['slot']}?topic=camera") == "camera"
    page = get(base + "/").decode()
    assert "kvs_stream" in page and "main camera" in page and "sub camera" in page


def test_ports_listen_on_loopback_unless_the_inventory_opens_them(
    viewer: tuple[TestBed, str, str], tmp_path: Path
) -> None:
    """minio (root credentials) and the videos (no authentication) listen on the host's
    127.0.0.1: the controller and the viewer come through SSH. h2's inventory entry opens its
    ports (publish_address: 0.0.0.0), as DRfC publishes them."""
    bed, base, inv = viewer
    workers = json.loads(get(base + "/api/workers"))
    published = {
        h: [
            p.strip()
            for line in bed.exec(h, "docker ps --format '{{.Ports}}'").splitlines()
            for p in line.split(",")
            if "->" in p
        ]
        for h in ("h1", "h2")
    }
    assert any("->9000/tcp" in p for p in published["h1"])  # minio on the trainer
    assert published["h1"] and all(p.startswith("127.0.0.1:") for p in published["h1"])
    assert published["h2"] and all(p.startswith("0.0.0.0:") for p in published["h2"])
    h1, h2 = bed.hosts["h1"].address, bed.hosts["h2"].address
    on = {h: [w["port"] for w in workers if w["host"] == h] for h in ("h1", "h2")}
    assert on["h1"] and on["h2"]
    for port in (9000, *on["h1"]):  # minio and h1's videos, as anyone else on the net tries
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((h1, port), timeout=5).close()
    for port in on["h2"]:  # opened on h2: reached directly, as DRfC's local browser does
        assert frames(f"http://{h2}:{port}{stream_path('main_camera', 60, 320, 240)}") >= 1
    page = tmp_path / "workers.html"
    refused = invoke("viewer", "--static", str(page), "--inventory", inv)
    assert refused.code == 2 and not page.exists()
    for w in workers:
        assert (f"worker {w['slot']} on h1" in refused.stderr) == (w["host"] == "h1")
    assert "publish_address" in refused.stderr


def test_vnc_of_a_worker_is_reached_through_ssh(viewer: tuple[TestBed, str, str]) -> None:
    """DR_GUI_ENABLE=True: each worker's VNC (5900 in the container, run.sh's x11vnc) is
    published on its host's 127.0.0.1-reachable port and `invoke vnc` brings it here."""
    _bed, _, inv = viewer
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "invoke",
            "vnc",
            "--worker",
            "3",
            "--json",
            "--inventory",
            inv,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line, proc.stderr.read()  # type: ignore[union-attr]
        doc = json.loads(line)
        assert doc["worker"] == 3 and doc["address"] == "127.0.0.1"
        with socket.create_connection(("127.0.0.1", doc["port"]), timeout=10) as s:
            s.settimeout(10)
            assert s.recv(12) == b"RFB 003.008\n"  # the RFB greeting of a VNC server
    finally:
        proc.terminate()
        proc.wait(10)
    missing = invoke("vnc", "--worker", "9", "--inventory", inv)
    assert missing.code == 2 and "no host runs drfleet-robomaker-9" in missing.stderr


class Browser:
    """Headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, url: str, tmp: Path) -> None:
        import websocket  # websocket-client

        port = free_port()
        self.proc = subprocess.Popen(
            [
                CHROMIUM or "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1100,900",
                f"--user-data-dir={tmp}",
                f"--remote-debugging-port={port}",
                url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                pages = json.loads(get(f"http://127.0.0.1:{port}/json"))
                target = next(p for p in pages if p["type"] == "page")
                break
            except (OSError, StopIteration):
                assert time.monotonic() < deadline, "chromium did not start"
                time.sleep(0.3)
        self.ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=30)
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                return msg.get("result", {})  # type: ignore[no-any-return]

    def tiles(self) -> dict[str, tuple[str, bool]]:
        expr = (
            "JSON.stringify([...document.querySelectorAll('.tile')].map(t => "
            "[t.dataset.slot, t.dataset.live || '', t.classList.contains('down'), "
            "t.querySelector('img').naturalWidth]))"
        )
        value = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        rows = json.loads(value["result"]["value"])
        return {slot: (live, not down and width > 0) for slot, live, down, width in rows}

    def wait(self, pred: Any, timeout: float) -> dict[str, tuple[str, bool]]:
        deadline = time.monotonic() + timeout
        tiles: dict[str, tuple[str, bool]] = {}
        while time.monotonic() < deadline:
            tiles = self.tiles()
            if pred(tiles):
                return tiles
            time.sleep(0.5)
        raise AssertionError(f"browser tiles: {tiles}")

    def points(self) -> dict[str, list[tuple[int, float]]]:
        """The plot's points: (iteration, value) of the reward and of the progress."""
        expr = (
            "JSON.stringify([...document.querySelectorAll('#chart circle.point')].map(c => "
            "[c.classList.contains('reward') ? 'reward' : 'progress', "
            "+c.dataset.iteration, +c.dataset.value]))"
        )
        value = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        out: dict[str, list[tuple[int, float]]] = {"reward": [], "progress": []}
        for kind, iteration, v in json.loads(value["result"]["value"]):
            out[kind].append((int(iteration), float(v)))
        return out

    def screenshot(self, path: Path) -> None:
        shot = self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        self.ws.close()
        self.proc.terminate()
        self.proc.wait(10)


def _plotted_from_s3(bed: TestBed, iterations: int) -> dict[str, list[tuple[int, float]]]:
    """What the plot must show, from the workers' TrainingMetrics objects in the run's S3:
    iteration k is each worker's training episodes 2k-1..2k (6 episodes over 3 workers),
    averaged over all of them."""
    client = s3(bed)
    played = []
    for key in ("TrainingMetrics.json", "TrainingMetrics_1.json", "TrainingMetrics_2.json"):
        body = client.get_object(Bucket="bucket", Key=f"{PREFIX}/metrics/{key}")["Body"].read()
        played.append([m for m in json.loads(body)["metrics"] if m["phase"] == "training"])
    out: dict[str, list[tuple[int, float]]] = {"reward": [], "progress": []}
    for k in range(1, iterations + 1):
        eps = [m for ms in played for m in ms[2 * (k - 1) : 2 * k]]
        assert len(eps) == 6
        out["reward"].append((k, round(sum(m["reward_score"] for m in eps) / 6, 2)))
        out["progress"].append((k, round(sum(m["completion_percentage"] for m in eps) / 6, 2)))
    return out


def test_the_page_plots_reward_and_progress_per_iteration_as_training_goes(
    viewer: tuple[TestBed, str, str], tmp_path: Path
) -> None:
    """The plot beside the streams has a point per completed iteration, equal to the workers'
    metrics in S3 (the stand-in scores 10 * k + idx in iteration k), and grows live. Before
    the next test restarts a worker (which starts its metrics file over)."""
    assert CHROMIUM, "needs Debian's chromium: scripts/setup.sh --test installs it"
    bed, base, _inv = viewer
    browser = Browser(base + "/", tmp_path / "profile")
    try:
        deadline = time.monotonic() + 90
        while len((first := browser.points())["reward"]) < 1:
            assert time.monotonic() < deadline, "no point was plotted"
            time.sleep(1)
        while len((later := browser.points())["reward"]) <= len(first["reward"]):
            assert time.monotonic() < deadline, f"the plot did not grow: {first}"
            time.sleep(1)
        n = len(later["reward"])
        assert later == _plotted_from_s3(bed, n), later
        assert [v for _, v in later["reward"]] == [10.0 * k + 1 for k in range(1, n + 1)]
        assert (
            "last mean reward"
            in browser.call(
                "Runtime.evaluate",
                expression="document.getElementById('plotnote').textContent",
                returnByValue=True,
            )["result"]["value"]
        )
    finally:
        browser.close()


def test_browser_shows_every_stream_and_follows_a_restart(
    viewer: tuple[TestBed, str, str], tmp_path: Path
) -> None:
    # a missing browser fails the suite rather than skipping what docs/reliability.md claims
    assert CHROMIUM, "needs Debian's chromium: scripts/setup.sh --test installs it"
    bed, base, _inv = viewer
    browser = Browser(base + "/", tmp_path / "profile")
    try:
        live = browser.wait(lambda t: len(t) == 3 and all(ok for _, ok in t.values()), 30)
        assert set(live) == {"1", "2", "3"}
        shot = tmp_path / "viewer.png"
        browser.screenshot(shot)
        assert shot.stat().st_size > 5000
        host = next(w["host"] for w in json.loads(get(base + "/api/workers")) if w["slot"] == 2)
        bed.exec(host, "docker kill drfleet-robomaker-2")
        browser.wait(lambda t: not t["2"][1], 20)  # its tile says it is down
        # the agent restarts it after its backoff; the same page picks the stream up again
        browser.wait(lambda t: all(ok for _, ok in t.values()), 60)
    finally:
        browser.close()

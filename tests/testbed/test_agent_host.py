"""The bundled agent on a real host: systemd runs it, the host's own dockerd runs containers."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from drfleet.hosts import agent_bundle
from tests.testbed import TestBed, ensure_docker_host_image
from tests.testbed.images import ensure_busybox

PYZ = "/usr/local/lib/drfleet/drfleet-agent.pyz"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestBed]:
    image = ensure_docker_host_image(tmp_path_factory.mktemp("bake"))
    busybox = ensure_busybox()
    with TestBed(1, tmp_path_factory.mktemp("agenthost"), image=image) as bed:
        bed.busybox = busybox  # type: ignore[attr-defined]
        deadline = time.monotonic() + 60
        while bed.exec("h1", "docker info >/dev/null 2>&1 && echo ok", check=False) != "ok\n":
            assert time.monotonic() < deadline, "nested dockerd did not start"
            time.sleep(0.5)
        save = subprocess.Popen(["docker", "save", busybox], stdout=subprocess.PIPE)
        subprocess.run(
            ["docker", "exec", "-i", bed.hosts["h1"].container, "docker", "load"],
            stdin=save.stdout,
            check=True,
            capture_output=True,
        )
        save.wait()
        bundle = agent_bundle.build()
        subprocess.run(
            [
                "docker",
                "exec",
                "-i",
                bed.hosts["h1"].container,
                "sh",
                "-c",
                f"mkdir -p /usr/local/lib/drfleet && cat > {PYZ}",
            ],
            input=bundle,
            check=True,
        )
        bed.exec(
            "h1",
            "cat > /etc/systemd/system/drfleet-agent.service",
            stdin=agent_bundle.UNIT.read_text(),
        )
        bed.exec("h1", "systemctl daemon-reload && systemctl enable --now drfleet-agent")
        yield bed


def agent(bed: TestBed, *args: str, stdin: str | None = None) -> str:
    return bed.exec(
        "h1", f"python3 {PYZ} {' '.join(args)} --state-dir /var/lib/drfleet", stdin=stdin
    )


def status(bed: TestBed) -> dict[str, Any]:
    return json.loads(agent(bed, "status", "--json"))  # type: ignore[no-any-return]


def wait_running(bed: TestBed, names: list[str], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        doc = status(bed)
        rows = {c["name"]: c for c in doc["containers"]}
        if (
            doc["agent"].get("docker", {}).get("reachable")
            and not doc["agent"].get("stale")
            and all(rows.get(n, {}).get("state") == "running" for n in names)
        ):
            return doc
        time.sleep(0.3)
    raise AssertionError(
        json.dumps(doc, indent=1)
        + bed.exec("h1", "journalctl -u drfleet-agent --no-pager | tail -30", check=False)
    )


def started(bed: TestBed, name: str) -> str:
    return bed.exec("h1", f"docker inspect -f '{{{{.Id}}}} {{{{.State.StartedAt}}}}' {name}")


def apply_two(bed: TestBed, generation: int) -> list[str]:
    img = bed.busybox  # type: ignore[attr-defined]
    names = ["w1", "w2"]
    doc = {
        "fleet": "hosttest",
        "run_id": "0",
        "generation": generation,
        "containers": [
            {
                "name": n,
                "image": img,
                "command": ["sleep", "3600"],
                "restart": "always",
                "networks": ["sagemaker-local"],
            }
            for n in names
        ],
    }
    agent(bed, "apply", "--wait", "30", stdin=json.dumps(doc))
    return names


def test_unit_runs_the_bundled_agent_on_the_hosts_python(host: TestBed) -> None:
    assert host.exec("h1", "systemctl is-active drfleet-agent").strip() == "active"
    assert host.exec("h1", "stat -c %a /var/lib/drfleet").strip() == "700"
    # the host has no docker SDK of its own: everything came in the bundle
    assert "No module named" in host.exec("h1", "python3 -c 'import docker' 2>&1", check=False)


def test_dockerd_restart_agent_reconnects_and_reruns_everything(host: TestBed) -> None:
    names = apply_two(host, 1)
    wait_running(host, names)
    before = {n: started(host, n) for n in names}
    host.exec("h1", "systemctl restart docker")
    # status.json may still say "running" from before the restart until the agent's next
    # pass; what counts is that each container was started again, and runs
    deadline = time.monotonic() + 60
    after = before
    while time.monotonic() < deadline:
        after = {n: started(host, n) for n in names}
        if all(after[n] != before[n] for n in names):
            break
        time.sleep(0.5)
    doc = wait_running(host, names, timeout=40)
    for n in names:
        assert after[n].split()[0] == before[n].split()[0]  # same container, started again
        assert after[n] != before[n]
    assert host.exec("h1", "systemctl is-active drfleet-agent").strip() == "active"
    assert doc["agent"]["docker"]["reachable"] is True


def test_agent_killed_systemd_restarts_it_containers_untouched(host: TestBed) -> None:
    names = apply_two(host, 2)
    wait_running(host, names)
    before = {n: started(host, n) for n in names}
    pid = host.exec("h1", "systemctl show -p MainPID --value drfleet-agent").strip()
    host.exec("h1", f"kill -9 {pid}")
    deadline = time.monotonic() + 20
    new = pid
    while time.monotonic() < deadline:
        new = host.exec("h1", "systemctl show -p MainPID --value drfleet-agent").strip()
        if new not in (pid, "0"):
            break
        time.sleep(0.3)
    assert new not in (pid, "0"), "systemd did not restart the agent"
    doc = wait_running(host, names)
    assert str(doc["agent"]["pid"]) == new
    time.sleep(3)
    assert {n: started(host, n) for n in names} == before  # never touched
    assert host.exec("h1", "docker ps -q | wc -l").strip() == "2"  # no duplicates

import json
import shutil
import subprocess
import sys
from pathlib import Path

from drfleet.hosts import probe
from drfleet.hosts.facts import PROBE_SOURCE, probe_command
from drfleet.hosts.hostfacts import Facts


def test_os_release() -> None:
    text = (
        'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nID=ubuntu\nVERSION_ID="22.04"\nVERSION_CODENAME=jammy\n'
    )
    assert probe.parse_os_release(text) == {
        "id": "ubuntu",
        "version": "22.04",
        "codename": "jammy",
        "pretty": "Ubuntu 22.04.4 LTS",
    }


def test_meminfo() -> None:
    assert probe.parse_meminfo("MemTotal:       32768000 kB\nMemFree: 1 kB\n") == 32000


def test_nvidia_smi() -> None:
    out = "0, Tesla T4, 15360, 560.35.03\n1, NVIDIA A10G, 23028, 560.35.03\n"
    assert probe.parse_nvidia_smi(out) == [
        {"index": "0", "name": "Tesla T4", "memory_mb": 15360, "driver": "560.35.03"},
        {"index": "1", "name": "NVIDIA A10G", "memory_mb": 23028, "driver": "560.35.03"},
    ]


def test_probe_command_runs_in_a_shell_and_prints_json() -> None:
    out = subprocess.run(
        ["sh", "-c", probe_command().render()],
        input=PROBE_SOURCE,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    facts = json.loads(out)
    assert facts["vcpus"] >= 1 and facts["memory_mb"] > 0 and facts["os"]["id"]
    assert facts["python"] == ".".join(map(str, sys.version_info[:3])) or facts["python"]


def test_probe_without_python3_says_so(tmp_path: Path) -> None:
    (tmp_path / "sh").symlink_to(shutil.which("sh") or "/bin/sh")
    out = subprocess.run(
        [str(tmp_path / "sh"), "-c", probe_command().render()],
        capture_output=True,
        text=True,
        env={"PATH": str(tmp_path)},
    ).stdout
    assert json.loads(out) == {"probe": 0, "error": "python3 not found"}


def test_a_section_that_cannot_be_read_keeps_its_error_apart(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The data stays the empty value of its type; the error goes to "errors" (a reader
    iterating the nodes never meets an error text instead)."""
    from drfleet.playbook.modules.docker import plan_swarm

    def broken() -> None:
        raise OSError("docker.sock: connection reset")

    swarm = {"state": "active", "is_manager": True, "node_id": "n1", "cluster_id": "c1"}
    monkeypatch.setattr(probe, "docker", lambda: {"running": True, "swarm": swarm})
    monkeypatch.setattr(probe, "nodes", broken)
    monkeypatch.setattr(probe, "networks", lambda: {})
    out = probe.gather({"only": ["nodes", "networks"]})
    assert out["nodes"] == [] and out["networks"] == {}
    assert out["errors"] == {"nodes": "nodes: docker.sock: connection reset"}
    assert Facts(out).error("nodes") and not Facts(out).error("networks")
    assert Facts(out).nodes == []
    facts = Facts({**out, "docker": {"running": True, "swarm": swarm}})
    plan = plan_swarm("t", {"t": facts}, "sagemaker-local", None)
    assert "nodes: docker.sock: connection reset" in plan.errors["t"]


def test_each_fact_type_reads_a_recorded_host() -> None:
    """The typed view over what the probe's parsers make of a recorded host."""
    from tests.unit.hosts import recorded

    deb = Facts(recorded("debian-12-docker"))
    assert (deb.os.id, deb.os.version, deb.os.codename) == ("debian", "12", "bookworm")
    assert deb.docker.installed and deb.docker.running and deb.docker.version
    assert deb.docker.swarm.state == "inactive" and not deb.docker.swarm.is_manager
    assert deb.vcpus >= 1 and deb.memory_mb > 0 and deb.arch == "x86_64"
    assert any(a.dev == "eth0" for a in deb.net.addresses)
    assert "0.0.0.0/0" not in deb.net.routes and deb.net.default_source
    assert deb.packages.get("ca-certificates")
    ubu = Facts(recorded("ubuntu-22.04", nvidia_smi="0, Tesla T4, 15360, 560.35.03\n"))
    assert (ubu.os.id, ubu.os.version, ubu.os.codename) == ("ubuntu", "22.04", "jammy")
    assert ubu.vcpus == 16 and ubu.memory_mb == 32329340 // 1024
    assert not ubu.docker.installed and not ubu.docker.running
    assert [(g.name, g.memory_mb, g.driver) for g in ubu.gpus] == [("Tesla T4", 15360, "560.35.03")]
    assert ubu.net.default_source == "172.31.20.15"
    assert ubu.account("ubuntu").exists and not ubu.account("nobody-here").exists
    assert not ubu.file("/etc/docker/daemon.json").exists  # not asked: reads as absent
    assert ubu.unit("docker.service").load == "not-found"
    assert ubu.images == {} and ubu.networks == {} and ubu.nodes == [] and ubu.error("nodes") == ""


def test_an_encrypted_overlay_needs_esp_on_every_host() -> None:
    """dockerd programs IPsec ESP (AES-GCM) for an encrypted overlay; a kernel without it
    drops the traffic between hosts without a word, so such hosts are refused up front."""
    from drfleet.playbook.modules.docker import network_args, plan_swarm

    swarm = {"state": "inactive", "is_manager": False, "node_id": "", "cluster_id": ""}
    base = {"docker": {"running": True, "swarm": swarm}, "networks": {}, "nodes": []}
    esp = {"esp": True, "error": ""}
    none = {"esp": False, "error": "Error: Requested AEAD algorithm not found."}
    ok = plan_swarm(
        "t",
        {"t": Facts({**base, "ipsec": esp}), "w": Facts({**base, "ipsec": esp})},
        "n",
        None,
        True,
    )
    assert not ok.errors and ok.init and ok.join == ["w"]
    assert ok.network and ok.network["encrypted"] is True
    argv = network_args("n", "overlay", "10.9.0.0/24", True, {}, ok.network["encrypted"])
    assert argv[argv.index("--opt") + 1] == "encrypted"
    refused = plan_swarm(
        "t",
        {"t": Facts({**base, "ipsec": esp}), "w": Facts({**base, "ipsec": none})},
        "n",
        None,
        True,
    )
    assert list(refused.errors) == ["w"]
    assert "Requested AEAD algorithm not found" in refused.errors["w"]
    assert "overlay_encrypted: false" in refused.errors["w"]
    plain = plan_swarm("t", {"t": Facts({**base, "ipsec": none})}, "n", None, False)
    assert not plain.errors and plain.network and plain.network["encrypted"] is False
    clear = {"driver": "overlay", "attachable": True, "encrypted": False}
    changed = plan_swarm(
        "t", {"t": Facts({**base, "ipsec": esp, "networks": {"n": clear}})}, "n", None, True
    )
    assert "exists unencrypted and overlay_encrypted is true" in changed.network_error


def test_a_workers_managers_and_whether_they_answer() -> None:
    """docker info's RemoteManagers (a worker's only view of its swarm), and a TCP connection
    to each on its swarm port: one that listens answers "", one that does not says why."""
    import socket

    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: refused
    up, down = (f"127.0.0.1:{s.getsockname()[1]}" for s in (listening, closed))
    info = {
        "ServerVersion": "29.1.3",
        "Swarm": {
            "LocalNodeState": "active",
            "NodeID": "n2",
            "ControlAvailable": False,
            "RemoteManagers": [{"NodeID": "m1", "Addr": up}, {"NodeID": "m2", "Addr": down}],
        },
    }
    swarm = probe.parse_docker_info(info, installed=True)["swarm"]
    typed = Facts({"docker": {"running": True, "swarm": swarm}}).docker.swarm
    assert [(m.node_id, m.addr) for m in typed.managers] == [("m1", up), ("m2", down)]
    try:
        reach = probe.managers_reach(swarm, timeout=2)
    finally:
        listening.close()
        closed.close()
    assert reach[up] == "" and "refused" in reach[down].lower()
    assert probe.managers_reach({**swarm, "is_manager": True}) == {}
    assert probe.managers_reach({"state": "inactive", "managers": swarm["managers"]}) == {}
    assert Facts({"managers": reach}).managers == reach

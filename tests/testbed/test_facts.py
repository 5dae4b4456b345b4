"""`invoke facts` over real SSH to real hosts: parallel, strict host keys, faults."""

from __future__ import annotations

import base64
from pathlib import Path

import paramiko
import pytest
import yaml

from drfleet.hostkeys import fingerprint
from tests.conftest import invoke
from tests.testbed import TestBed

pytestmark = pytest.mark.testbed


def fingerprints(keys: list[str]) -> set[str]:
    out = set()
    for line in keys:
        kind, b64 = line.split()[:2]
        out.add(fingerprint(paramiko.PKey.from_type_string(kind, base64.b64decode(b64))))
    return out


def inventory_with(bed: TestBed, tmp_path: Path, **all_vars: object) -> Path:
    doc = yaml.safe_load(bed.inventory.read_text())
    doc["all"]["vars"].update(all_vars)
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_facts_of_three_hosts_over_ssh(bed3: TestBed) -> None:
    run = invoke("facts", "--inventory", str(bed3.inventory), "--json")
    assert run.code == 0, run.stderr
    hosts = run.json["hosts"]
    assert sorted(hosts) == ["h1", "h2", "h3"]
    for name, f in hosts.items():
        assert f["reachable"] is True
        assert f["hostname"] == name and f["address"] == bed3.hosts[name].address
        assert f["os"] == {
            "id": "debian",
            "version": "12",
            "codename": "bookworm",
            "pretty": "Debian GNU/Linux 12 (bookworm)",
        }
        assert f["vcpus"] >= 1 and f["memory_mb"] > 256 and f["disk"]["free_mb"] > 0
        assert f["gpus"] == []
        assert f["docker"]["installed"] is False and f["docker"]["running"] is False
        assert f["docker"]["swarm"]["state"] == "inactive"
        # logged in as the unprivileged user, facts gathered through sudo (become: true)
        assert f["login_user"] == "fleet" and f["user"] == "root"
    assert hosts["h1"]["roles"] == ["trainer", "robomaker"]


def test_without_become_runs_as_the_login_user(bed3: TestBed, tmp_path: Path) -> None:
    inv = inventory_with(bed3, tmp_path, become=False)
    run = invoke("facts", "--inventory", str(inv), "--host", "h2", "--json")
    assert run.code == 0, run.stderr
    assert run.json["hosts"]["h2"]["user"] == "fleet"


def test_unknown_host_key_refused_then_trusted_on_request(bed3: TestBed, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    inv = inventory_with(bed3, tmp_path, known_hosts=str(known))
    run = invoke("facts", "--inventory", str(inv), "--json")
    assert run.code == 1
    for name, f in run.json["hosts"].items():
        assert "unknown SSH host key" in f["error"] and "--accept-new-host-keys" in f["error"]
        assert any(fp in f["error"] for fp in fingerprints(bed3.hosts[name].host_keys))
        assert "vcpus" not in f  # nothing ran there
    assert not known.exists()

    run = invoke("facts", "--inventory", str(inv), "--json", "--accept-new-host-keys")
    assert run.code == 0, run.stderr
    recorded = known.read_text()
    assert all(h.address in recorded for h in bed3.hosts.values())
    assert known.stat().st_mode & 0o777 == 0o600

    run = invoke("facts", "--inventory", str(inv), "--json")  # now known: strict mode passes
    assert run.code == 0, run.stderr


def test_changed_host_key_is_refused_naming_both(bed3: TestBed) -> None:
    old = fingerprints(bed3.hosts["h2"].host_keys)
    bed3.recreate("h2", trust=False)  # same address, new machine, new keys
    try:
        new = fingerprints(bed3.hosts["h2"].host_keys)
        for extra in ([], ["--accept-new-host-keys"]):  # TOFU never overrides a changed key
            run = invoke("facts", "--inventory", str(bed3.inventory), "--json", *extra)
            assert run.code == 1
            hosts = run.json["hosts"]
            assert hosts["h1"]["reachable"] and hosts["h3"]["reachable"]
            err = hosts["h2"]["error"]
            assert "h2" in err and "CHANGED" in err and "ssh-keygen -R" in err
            assert any(fp in err for fp in old) and any(fp in err for fp in new)
            assert "vcpus" not in hosts["h2"]
    finally:
        bed3.write_inventory()  # the operator checked and trusts the new keys


def test_stopped_host_is_unreachable_others_answer(bed3: TestBed) -> None:
    bed3.stop("h3")
    try:
        run = invoke("facts", "--inventory", str(bed3.inventory), "--json")
        assert run.code == 1
        hosts = run.json["hosts"]
        assert hosts["h1"]["vcpus"] >= 1 and hosts["h2"]["vcpus"] >= 1
        assert hosts["h3"]["reachable"] is False
        assert "unreachable" in hosts["h3"]["error"] and "h3" in hosts["h3"]["error"]
        human = invoke("facts", "--inventory", str(bed3.inventory))
        assert human.code == 1 and "h3" in human.stderr and "unreachable" in human.stderr
    finally:
        bed3.start_host("h3")


def test_proxy_jump_through_another_host(bed3: TestBed, tmp_path: Path) -> None:
    doc = yaml.safe_load(bed3.inventory.read_text())
    doc["all"]["hosts"]["h3"]["proxy_jump"] = f"fleet@{bed3.hosts['h1'].address}"
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump(doc))
    run = invoke("facts", "--inventory", str(inv), "--host", "h3", "--json")
    assert run.code == 0, run.stderr
    assert run.json["hosts"]["h3"]["hostname"] == "h3"

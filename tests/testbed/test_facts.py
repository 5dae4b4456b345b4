"""`invoke facts` over real SSH to real hosts: parallel, strict host keys, faults."""

from __future__ import annotations

import base64
from pathlib import Path

import paramiko
import yaml

from drfleet.hosts.hostkeys import fingerprint
from tests.conftest import drfleet, invoke
from tests.testbed import TestBed


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
        assert "unknown SSH host key" in f["error"] and "--accept-new-host-keys" in f["fix"]
        assert "--accept-new-host-keys" not in f["error"]  # the fix is a field of its own
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
            assert "h2" in err and "CHANGED" in err and "ssh-keygen -R" in hosts["h2"]["fix"]
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


def test_proxy_jump_from_ssh_config_verifies_the_gateway(bed3: TestBed, tmp_path: Path) -> None:
    """A ProxyJump in ~/.ssh/config (not in the inventory) is followed, and the gateway's key
    is checked against known_hosts like any host's: an unknown one is refused."""
    h1, h3 = bed3.hosts["h1"], bed3.hosts["h3"]
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        f"Host h3-behind-h1\n  HostName {h3.address}\n  ProxyJump fleet@{h1.address}\n"
    )
    doc = yaml.safe_load(bed3.inventory.read_text())
    doc["all"]["hosts"] = {"h3": {**doc["all"]["hosts"]["h3"], "address": "h3-behind-h1"}}
    known = tmp_path / "known_hosts"  # h3's keys only: the gateway is unknown
    known.write_text("".join(f"{h3.address} {k}\n" for k in h3.host_keys))
    doc["all"]["vars"]["known_hosts"] = str(known)
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump(doc))
    env = {"HOME": str(home)}
    refused = invoke("facts", "--inventory", str(inv), env=env)
    assert refused.code == 1
    assert "unknown SSH host key" in refused.stderr and h1.address in refused.stderr
    assert "h3 via" in refused.stderr, refused.stderr  # names the hop, not just the host
    known.write_text(bed3.known_hosts.read_text())
    run = invoke("facts", "--inventory", str(inv), "--json", env=env)
    assert run.code == 0, run.stderr
    assert run.json["hosts"]["h3"]["hostname"] == "h3"


def test_an_ansible_inventory_with_a_jump_host_drives_facts(bed3: TestBed, tmp_path: Path) -> None:
    """Inventories written for Ansible, YAML and INI: ansible_host, ansible_user,
    ansible_ssh_private_key_file, ansible_become and a ProxyJump in ansible_ssh_common_args
    (h3 through h1) reach every host."""
    h = bed3.hosts
    jump = f"-o ProxyJump=fleet@{h['h1'].address}"
    ini = tmp_path / "hosts.ini"
    ini.write_text(
        f"h1 ansible_host={h['h1'].address}\n"
        "[trainer]\n"
        f"h2 ansible_host={h['h2'].address}\n"
        "[robomaker]\n"
        f"h3 ansible_host={h['h3'].address} ansible_ssh_common_args='{jump}'\n"
        "[all:vars]\n"
        f"ansible_user=fleet\nansible_ssh_private_key_file={bed3.key}\nansible_become=yes\n"
        f"known_hosts={bed3.known_hosts}\n"
    )
    yml = tmp_path / "hosts.yml"
    yml.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "vars": {
                        "ansible_user": "fleet",
                        "ansible_ssh_private_key_file": str(bed3.key),
                        "ansible_become": True,
                        "known_hosts": str(bed3.known_hosts),
                    },
                    "hosts": {
                        "h1": {"ansible_host": h["h1"].address},
                        "h2": {"ansible_host": h["h2"].address},
                        "h3": {
                            "ansible_host": h["h3"].address,
                            "ansible_ssh_common_args": jump,
                        },
                    },
                }
            }
        )
    )
    journal = "journalctl -u ssh --no-pager 2>/dev/null; true"
    before = bed3.exec("h3", journal).count(f"from {h['h1'].address} ")
    for inv in (ini, yml):
        run = drfleet("facts", "-i", str(inv), "-j", cwd=tmp_path)
        assert run.code == 0, run.stderr
        assert {n: d["hostname"] for n, d in run.json["hosts"].items()} == {
            "h1": "h1",
            "h2": "h2",
            "h3": "h3",
        }
    # the jump was taken both times: h3 saw the logins come from h1
    assert bed3.exec("h3", journal).count(f"from {h['h1'].address} ") >= before + 2


PASSWORD = "s3cret $(touch /tmp/pwned) `id` 'q\" ;"


def test_sudo_with_a_password_from_the_environment(bed3: TestBed, tmp_path: Path) -> None:
    """A login user whose sudo wants a password: it comes from the environment, reaches
    sudo on stdin only, and appears in no output, log or command line."""
    h = bed3.hosts["h3"]
    bed3.exec(
        h,
        "id pw >/dev/null 2>&1 || useradd -m -s /bin/bash pw; chpasswd; "
        "echo 'pw ALL=(ALL) ALL' > /etc/sudoers.d/pw; chmod 0440 /etc/sudoers.d/pw; "
        "install -d -m 0700 -o pw -g pw /home/pw/.ssh; "
        "install -m 0600 -o pw -g pw /home/fleet/.ssh/authorized_keys /home/pw/.ssh/",
        stdin=f"pw:{PASSWORD}\n",
    )
    doc = yaml.safe_load(bed3.inventory.read_text())
    doc["all"]["hosts"] = {"h3": doc["all"]["hosts"]["h3"]}
    doc["all"]["vars"]["ssh_user"] = "pw"
    inv = tmp_path / "pw.yml"
    inv.write_text(yaml.safe_dump(doc))
    book = tmp_path / "book.yml"
    book.write_text(
        "- hosts: all\n  tasks:\n    - name: a file only root may write\n"
        '      copy: {dest: /etc/drfleet-pw-test, content: "through sudo\\n", mode: "0600"}\n'
    )
    debug = {"DRFLEET_DEBUG": "all"}  # every library's debug log too: still no secret
    try:
        missing = invoke("facts", "--inventory", str(inv))
        assert missing.code == 1
        assert "sudo asks for a password" in missing.stderr
        assert "DRFLEET_BECOME_PASSWORD" in missing.stderr

        runs = [
            invoke(
                "facts",
                "--inventory",
                str(inv),
                "--json",
                env={**debug, "DRFLEET_BECOME_PASSWORD": PASSWORD},
            ),
            invoke(
                "provision",
                "--inventory",
                str(inv),
                "--playbook",
                str(book),
                "--json",
                env={**debug, "DRFLEET_BECOME_PASSWORD": PASSWORD},
            ),
        ]
        for run in runs:
            assert run.code == 0, run.stdout[-2000:] + run.stderr[-2000:]
        assert runs[0].json["hosts"]["h3"]["vcpus"] >= 1  # the probe came through on stdin
        assert bed3.exec(h, "cat /etc/drfleet-pw-test") == "through sudo\n"  # whole, no extra line

        doc["all"]["vars"]["become_password_env"] = "MY_SUDO_PW"
        named = tmp_path / "named.yml"
        named.write_text(yaml.safe_dump(doc))
        runs.append(invoke("facts", "--inventory", str(named), env={"MY_SUDO_PW": PASSWORD}))
        assert runs[-1].code == 0, runs[-1].stderr

        wrong = invoke(
            "facts", "--inventory", str(inv), env={**debug, "DRFLEET_BECOME_PASSWORD": "nope-123"}
        )
        runs.append(wrong)
        assert wrong.code == 1
        assert "sudo did not accept the password in DRFLEET_BECOME_PASSWORD" in wrong.stderr
        for run in runs:
            assert "s3cret" not in run.stdout + run.stderr
            assert "nope-123" not in run.stdout + run.stderr
        assert bed3.exec(
            h, "journalctl --no-pager 2>/dev/null | grep -c s3cret || true"
        ).strip() in (
            "",
            "0",
        )
        assert bed3.exec(h, "ls /tmp/pwned 2>/dev/null || true") == ""
        assert not Path("/tmp/pwned").exists()
    finally:
        bed3.exec(
            h, "rm -f /etc/sudoers.d/pw /etc/drfleet-pw-test; userdel -r pw 2>/dev/null; true"
        )

"""`invoke provision` on fresh test-bed hosts (no docker on them), as a user runs it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from tests.conftest import Run, invoke, killed, provision, provision_args
from tests.testbed import TestBed, kernel_has_esp
from tests.testbed.images import ensure_busybox

SIMAPP, MINIO = "drfleet-test/simapp:1.0-cpu", "drfleet-test/minio:test"


@pytest.fixture(scope="module")
def env_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DRfC system.env naming images that exist only on this controller."""
    busybox = docker.from_env().images.get(ensure_busybox())
    for tag in (SIMAPP, MINIO):
        busybox.tag(tag)
    d = tmp_path_factory.mktemp("drfc")
    (d / "system.env").write_text(
        "# DRfC system.env (excerpt)\nDR_CLOUD=local\nDR_SIMAPP_SOURCE=drfleet-test/simapp\n"
        f"DR_SIMAPP_VERSION=1.0-cpu\nDR_MINIO_IMAGE={MINIO}\n"
    )
    return d


def counts(run: Run) -> dict[str, tuple[int, int, int]]:
    return {h: (r["changed"], r["failed"], r["unreachable"]) for h, r in run.json["hosts"].items()}


@pytest.fixture(scope="module")
def fleet3(tmp_path_factory: pytest.TempPathFactory, env_dir: Path) -> Iterator[TestBed]:
    with TestBed(3, tmp_path_factory.mktemp("fleet3")) as bed:
        # a local user got to the trainer's /tmp/sagemaker first (the compose files SageMaker
        # local mode writes there run as root through the docker socket)
        bed.exec("h1", "install -d -o fleet -m 0777 /tmp/sagemaker")
        bed.write_inventory(host_vars={"h2": {"vars": {"docker_group": True}}})
        first = provision(bed, env_dir)
        bed.first_run = first  # type: ignore[attr-defined]
        yield bed


def test_three_fresh_hosts_provisioned_at_once(fleet3: TestBed) -> None:
    run: Run = fleet3.first_run  # type: ignore[attr-defined]
    assert run.code == 0, run.stdout + run.stderr
    for name, r in run.json["hosts"].items():
        assert r["failed"] == 0 and r["changed"] >= 5, (name, r)
        h = fleet3.hosts[name]
        assert fleet3.exec(h, "systemctl is-active docker").strip() == "active"
        assert fleet3.exec(h, "systemctl is-enabled docker").strip() == "enabled"
        assert fleet3.exec(h, "systemctl is-active drfleet-agent").strip() == "active"
        # only where the inventory asks: the docker group is root without a password
        assert ("docker" in fleet3.exec(h, "id -nG fleet").split()) == (name == "h2")
        images = fleet3.exec(h, "docker images --format '{{.Repository}}:{{.Tag}}'").split()
        assert SIMAPP in images
        assert (MINIO in images) == (name == "h1")  # minio only on the trainer
    assert fleet3.exec("h1", "stat -c '%U %a' /tmp/sagemaker").split() == ["root", "700"]
    assert "0700 root root" in fleet3.exec("h1", "cat /etc/tmpfiles.d/drfleet-sagemaker.conf")


def test_swarm_and_overlay_connect_hosts(fleet3: TestBed) -> None:
    nodes = fleet3.exec("h1", "docker node ls --format '{{.Hostname}} {{.Status}}'").split("\n")
    assert sorted(n for n in nodes if n) == ["h1 Ready", "h2 Ready", "h3 Ready"]
    labels = {
        n: json.loads(fleet3.exec("h1", f"docker node inspect -f '{{{{json .Spec.Labels}}}}' {n}"))
        for n in ("h1", "h2", "h3")
    }
    assert labels["h1"] == {"Sagemaker": "true", "Robomaker": "true"}
    assert labels["h2"] == {"Robomaker": "true"}
    net = json.loads(fleet3.exec("h1", "docker network inspect sagemaker-local"))[0]
    assert net["Driver"] == "overlay" and net["Attachable"] is True
    # encrypted (IPsec) by default; the bed says overlay_encrypted: false where this kernel
    # cannot carry it (test_an_encrypted_overlay_needs_a_kernel_that_carries_it)
    assert ("encrypted" in (net["Options"] or {})) == kernel_has_esp()
    assert net["Labels"] == {
        "com.docker.compose.network": "sagemaker-local",
        "com.docker.compose.project": "sagemaker-local",
    }
    subnet = net["IPAM"]["Config"][0]["Subnet"]
    assert not subnet.startswith("10.213.")  # no clash with the hosts' own network
    # the join token never appeared on a command line: not in sudo's log or the journal of a
    # host that joined (ps shows command lines too; both come from the same argv)
    for h in ("h2", "h3"):
        logs = fleet3.exec(
            h, "journalctl --no-pager 2>/dev/null; cat /var/log/auth.log 2>/dev/null; true"
        )
        assert "SWMTKN" not in logs and "--token" not in logs, h
        assert "swarm/join" not in logs or "JoinToken" not in logs
    current = fleet3.exec("h1", "docker swarm join-token -q worker").strip()
    assert current.startswith("SWMTKN") and current not in fleet3.exec(
        "h2", "journalctl --no-pager 2>/dev/null; true"
    )
    fleet3.exec("h2", f"docker run -d --name target --network sagemaker-local {SIMAPP} sleep 300")
    try:
        out = fleet3.exec(
            "h3", f"docker run --rm --network sagemaker-local {SIMAPP} ping -c 1 -W 5 target"
        )
        assert "1 packets received" in out
    finally:
        fleet3.exec("h2", "docker rm -f target", check=False)


def test_an_encrypted_overlay_needs_a_kernel_that_carries_it(
    fleet3: TestBed, env_dir: Path, tmp_path: Path
) -> None:
    """Without ESP in the kernel an encrypted overlay drops traffic between hosts silently:
    provision names every such host and the way out before the swarm changes. Where the
    kernel has it, the fleet's overlay is encrypted and asking for a clear one is refused."""
    want = not kernel_has_esp()  # the other choice than the one the fleet was provisioned with
    inv = fleet3.write_inventory(tmp_path / "inventory.yml", overlay_encrypted=want)
    args = list(provision_args(fleet3, env_dir))
    args[args.index("--inventory") + 1] = str(inv)
    run = invoke(*args, "--check", "--json", timeout=600)
    assert run.code == 1, run.stdout[-2000:]
    if want:  # this kernel: no ESP
        for h in ("h1", "h2", "h3"):
            assert f"{h}: swarm: the kernel cannot do IPsec ESP" in run.stdout, run.stdout[-3000:]
        assert "overlay_encrypted: false" in run.stdout
    else:
        assert "exists encrypted and overlay_encrypted is false" in run.stdout
    net = json.loads(fleet3.exec("h1", "docker network inspect sagemaker-local"))[0]
    assert ("encrypted" in (net["Options"] or {})) == kernel_has_esp()  # nothing changed


def _token(bed: TestBed) -> str:
    return bed.exec("h1", "docker swarm join-token -q worker").strip()


def test_the_worker_token_is_rotated_once_a_host_has_joined(fleet3: TestBed, env_dir: Path) -> None:
    """h3 left the swarm; provision joins it again with the token of the moment, then
    rotates it: the token a host was handed is spent."""
    spent = _token(fleet3)
    fleet3.exec("h3", "docker swarm leave --force")
    fleet3.exec("h1", "docker node rm --force h3")
    run = provision(fleet3, env_dir)
    assert run.code == 0, run.stdout[-3000:] + run.stderr[-3000:]
    nodes = fleet3.exec("h1", "docker node ls --format '{{.Hostname}} {{.Status}}'").split("\n")
    assert sorted(n for n in nodes if n) == ["h1 Ready", "h2 Ready", "h3 Ready"]
    now = _token(fleet3)
    assert now.startswith("SWMTKN") and now != spent


def test_second_run_changes_nothing(fleet3: TestBed, env_dir: Path) -> None:
    token = _token(fleet3)
    run = provision(fleet3, env_dir)
    assert run.code == 0, run.stdout + run.stderr
    assert counts(run) == {"h1": (0, 0, False), "h2": (0, 0, False), "h3": (0, 0, False)}
    assert _token(fleet3) == token  # no host joined: nothing to rotate


# -- faults and bad input on a second, smaller bed ------------------------------------------
@pytest.fixture(scope="module")
def bed2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestBed]:
    with TestBed(2, tmp_path_factory.mktemp("bed2")) as bed:
        yield bed


def docker_installed(bed: TestBed, name: str) -> bool:
    return bed.exec(name, "command -v dockerd", check=False).strip() != ""


def test_check_mode_on_a_fresh_host_lists_changes_and_changes_nothing(
    bed2: TestBed, env_dir: Path
) -> None:
    before = bed2.exec(
        "h1", "find /etc /usr/local /var/lib/drfleet -newer /etc/hostname 2>/dev/null | sort"
    )
    run = provision(bed2, env_dir, "--check", "--host", "h1")
    assert run.code == 0, run.stdout + run.stderr
    tasks = {t["name"]: t for t in run.json["hosts"]["h1"]["tasks"]}
    assert run.json["check"] is True
    assert "docker.io" in tasks["Docker engine (Debian's docker.io)"]["msg"]
    assert tasks["Docker engine (Debian's docker.io)"]["status"] == "changed"
    assert any("apt-get install" in c for c in tasks["Base packages"]["commands"])
    assert tasks["drfleet agent"]["status"] == "changed"
    assert tasks["Simulation images"]["msg"].startswith("would copy")
    assert not docker_installed(bed2, "h1")
    after = bed2.exec(
        "h1", "find /etc /usr/local /var/lib/drfleet -newer /etc/hostname 2>/dev/null | sort"
    )
    assert after == before


@pytest.mark.parametrize(
    "body,message",
    [
        ("- hosts: all\n  tasks:\n    - name: x\n      apt: {name: [jq\n", "YAML syntax error"),
        (
            "- hosts: all\n  tasks:\n    - name: x\n      aptt: {name: jq}\n",
            "unknown module 'aptt'",
        ),
        (
            "- hosts: all\n  tasks:\n    - name: x\n      apt: {nam: jq}\n",
            "unknown argument 'nam' (did you mean 'name'?)",
        ),
        (
            "- hosts: all\n  tasks:\n    - name: x\n      apt: {name: jq}\n      when: 'a ==='\n",
            "does not parse",
        ),
    ],
)
def test_bad_playbook_is_one_message_and_touches_no_host(
    bed2: TestBed, tmp_path: Path, body: str, message: str
) -> None:
    book = tmp_path / "bad.yml"
    book.write_text(body)
    run = invoke("provision", "--inventory", str(bed2.inventory), "--playbook", str(book))
    assert run.code == 2
    assert message in run.stderr and f"{book}:" in run.stderr
    assert "Traceback" not in run.stderr and run.stderr.count("drfleet:") == 1
    assert not docker_installed(bed2, "h1") and not docker_installed(bed2, "h2")


HOSTILE = "$(touch /tmp/pwned) `touch /tmp/pwned` ; touch /tmp/pwned '\" |"


def test_hostile_inventory_vars_reach_provision_as_data(bed2: TestBed, tmp_path: Path) -> None:
    """Inventory vars flow into a playbook's shell lines, files and module arguments: a
    hostile one is written literally or refused by the module; nothing runs anywhere."""
    book = tmp_path / "vars.yml"
    book.write_text("""\
- hosts: all
  become: true
  tasks:
    - name: a var in a shell line
      command: {shell: "printf %s {{ note }} > /etc/drfleet-note-shell"}
    - name: a var in a file
      copy: {dest: /etc/drfleet-note-file, content: "{{ note }}"}
    - name: a var as packages
      apt: {name: "{{ base_packages }}"}
""")
    inv = bed2.write_inventory(tmp_path / "inv.yml", note=HOSTILE, base_packages=[HOSTILE])
    Path("/tmp/pwned").unlink(missing_ok=True)
    try:
        run = invoke("provision", "--inventory", str(inv), "--playbook", str(book), "--json")
        assert run.code == 1, run.stdout[-2000:]
        for h in ("h1", "h2"):
            assert bed2.exec(h, "cat /etc/drfleet-note-shell") == HOSTILE
            assert bed2.exec(h, "cat /etc/drfleet-note-file") == HOSTILE
            failed = [t for t in run.json["hosts"][h]["tasks"] if t["status"] == "failed"]
            assert [t["name"] for t in failed] == ["a var as packages"], failed
            assert "is not a Debian package name" in failed[0]["msg"]
            assert bed2.exec(h, "ls /tmp/pwned 2>/dev/null; true") == ""
        assert not Path("/tmp/pwned").exists()
    finally:
        for h in ("h1", "h2"):
            bed2.exec(h, "rm -f /etc/drfleet-note-shell /etc/drfleet-note-file /tmp/pwned")
        bed2.write_inventory()


def test_diff_shows_what_a_real_run_changed(bed2: TestBed, tmp_path: Path) -> None:
    """-D/--diff, as Ansible's: a real run prints each changed file's diff (check mode always
    did); without it, only the recap."""
    book = tmp_path / "diff.yml"
    for content in ("first\n", "second\n"):
        book.write_text(
            "- hosts: all\n  become: true\n  tasks:\n    - name: a file\n"
            f"      copy: {{dest: /etc/drfleet-diff-test, content: {content!r}}}\n"
        )
        run = invoke(
            "provision", "-i", str(bed2.inventory), "--playbook", str(book), "-l", "h1", "-D"
        )
        assert run.code == 0, run.stdout[-2000:] + run.stderr
    assert "-first" in run.stdout and "+second" in run.stdout, run.stdout
    quiet = invoke("provision", "-i", str(bed2.inventory), "--playbook", str(book), "-l", "h1")
    assert quiet.code == 0 and "+second" not in quiet.stdout
    bed2.exec("h1", "rm -f /etc/drfleet-diff-test")


def test_failing_task_fails_only_its_host_and_handlers_survive(
    bed2: TestBed, tmp_path: Path
) -> None:
    book = tmp_path / "fail.yml"
    book.write_text("""\
- hosts: all
  become: true
  tasks:
    - name: marker file
      copy: {dest: /etc/drfleet-test-marker, content: "v1\\n"}
      notify: note handler
    - name: a package that does not exist
      apt: {name: [drfleet-no-such-package]}
      when: host.name == 'h2' and fail_it
  handlers:
    - name: note handler
      command: {shell: "echo ran >> /etc/drfleet-test-handler"}
""")
    inv = bed2.write_inventory(tmp_path / "inv.yml", fail_it=True)
    run = invoke("provision", "--inventory", str(inv), "--playbook", str(book), "--json")
    assert run.code == 1
    hosts = run.json["hosts"]
    assert hosts["h1"]["failed"] == 0 and hosts["h2"]["failed"] == 1
    failed = next(t for t in hosts["h2"]["tasks"] if t["status"] == "failed")
    msg = failed["msg"]
    assert msg.startswith("h2: task 'a package that does not exist': `")
    assert "apt-get install" in msg and "exited with status 100" in msg
    assert "drfleet-no-such-package" in msg  # the last lines of stderr
    # h1 ran its handler; h2 stopped before handlers, but remembers it owes one
    assert bed2.exec("h1", "cat /etc/drfleet-test-handler") == "ran\n"
    assert bed2.exec("h2", "cat /etc/drfleet-test-handler", check=False) == ""
    assert bed2.exec("h2", "cat /var/lib/drfleet/pending-handlers") == "note handler\n"
    inv = bed2.write_inventory(tmp_path / "inv.yml", fail_it=False)
    run = invoke("provision", "--inventory", str(inv), "--playbook", str(book), "--json")
    assert run.code == 0, run.stdout
    assert bed2.exec("h2", "cat /etc/drfleet-test-handler") == "ran\n"
    assert bed2.exec("h1", "cat /etc/drfleet-test-handler") == "ran\n"  # not again
    assert bed2.exec("h2", "ls /var/lib/drfleet/pending-handlers", check=False) == ""
    bed2.write_inventory()


def test_stopped_host_is_unreachable_others_finish_rerun_completes(
    bed2: TestBed, env_dir: Path
) -> None:
    bed2.stop("h2")
    try:
        run = provision(bed2, env_dir)
        assert run.code == 1
        hosts = run.json["hosts"]
        assert hosts["h2"]["unreachable"] is True and "unreachable" in hosts["h2"]["error"]
        assert hosts["h1"]["failed"] == 0 and hosts["h1"]["changed"] >= 5
        assert docker_installed(bed2, "h1")
    finally:
        bed2.start_host("h2")
    run = provision(bed2, env_dir)
    assert run.code == 0, run.stdout + run.stderr
    assert counts(run)["h1"] == (0, 0, False)
    assert run.json["hosts"]["h2"]["changed"] >= 5
    assert bed2.exec("h1", "docker node ls -q | wc -l").strip() == "2"


def test_controller_killed_mid_provision_rerun_completes_nothing_half_written(
    env_dir: Path, tmp_path: Path
) -> None:
    with TestBed(2, tmp_path) as bed:
        bed.write_inventory()
        args = provision_args(bed, env_dir)

        def busy(pattern: str) -> Callable[[], bool]:
            return lambda: any(
                bed.exec(h, f"pgrep {pattern} >/dev/null && echo y || true").strip()
                for h in bed.hosts
            )

        def loaded() -> bool:
            return any(
                bed.exec(
                    h, f"docker image inspect {SIMAPP} >/dev/null 2>&1 && echo y || true"
                ).strip()
                for h in bed.hosts
            )

        killed(args, busy("-x dpkg"), timeout=300)  # in the middle of installing docker
        deadline = time.monotonic() + 300
        while busy("-x dpkg")():  # the orphaned apt finishes on its own
            assert time.monotonic() < deadline
            time.sleep(1)
        assert not loaded()
        killed(args, loaded, timeout=300)  # later: images loaded, swarm and agent to come
        rerun = provision(bed, env_dir)
        assert rerun.code == 0, rerun.stdout[-3000:] + rerun.stderr
        assert {h: r["failed"] for h, r in rerun.json["hosts"].items()} == {"h1": 0, "h2": 0}
        again = provision(bed, env_dir)  # converged: every file whole, nothing left to do
        assert counts(again) == {"h1": (0, 0, 0), "h2": (0, 0, 0)}, again.stdout[-3000:]
        for h in bed.hosts:
            assert bed.exec(h, "dpkg --audit").strip() == ""
            leftovers = "find /etc /usr/local /var/lib/drfleet -name '.*.drfleet*'"
            assert bed.exec(h, leftovers).strip() == ""
            assert bed.exec(h, "systemctl is-active drfleet-agent").strip() == "active"
            assert bed.exec(h, "python3 /usr/local/lib/drfleet/drfleet-agent.pyz --version")
        # a host that lost power in the middle of dpkg: apt refuses until `dpkg --configure -a`
        bed.exec("h2", "apt-get remove -y -q jq && touch /var/lib/dpkg/updates/0001")
        assert "dpkg was interrupted" in bed.exec("h2", "apt-get install -y jq 2>&1 || true")
        healed = provision(bed, env_dir)
        assert healed.code == 0, healed.stdout[-3000:] + healed.stderr
        assert bed.exec("h2", "dpkg-query -W -f '${Status}' jq") == "install ok installed"

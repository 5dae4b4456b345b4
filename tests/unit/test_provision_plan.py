"""The provision playbook planned offline from facts: the GPU, OpenGL and OS branches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from drfleet.hosts import inventory
from drfleet.playbook import loader
from drfleet.playbook.model import TaskResult
from drfleet.playbook.runner import Runner, RunOptions
from tests.unit.hosts import recorded

REPO = Path(__file__).resolve().parents[2]
IMAGES = {
    "cpu": "awsdeepracercommunity/deepracer-simapp:6.0.4-cpu",
    "gpu": "awsdeepracercommunity/deepracer-simapp:6.0.4-gpu",
    "minio": "minio/minio:latest",
}


def facts(nvidia_smi: str | None = None, **kw: Any) -> dict[str, Any]:
    """A fresh Ubuntu 22.04 c5.4xlarge (docker not installed yet), made by the probe's parsers
    from what its tools print (tests/unit/data/hosts/)."""
    return recorded("ubuntu-22.04", nvidia_smi=nvidia_smi, **kw)


def plan(
    tmp_path: Path, host_facts: dict[str, Any], extra: dict[str, Any] | None = None, **host: Any
) -> dict[str, TaskResult]:
    inv_file = tmp_path / "inv.yml"
    settings = ", ".join(f"{k}: {str(v).lower()}" for k, v in host.items())
    inv_file.write_text(
        "all:\n  hosts:\n    g1: {roles: [trainer, robomaker]"
        + (f", {settings}" if settings else "")
        + "}\n"
    )
    inv = inventory.load(inv_file)
    book = loader.load(REPO / "playbooks" / "provision.yml")
    runner = Runner(
        book,
        inv,
        inv.select(),
        RunOptions(check=True, extra_vars={"drfc_images": IMAGES, **(extra or {})}),
    )
    report = runner.simulate({"g1": host_facts})["g1"]
    return {t.name: t for t in report.tasks}


T4_560 = "0, Tesla T4, 15360, 560.35.03\n"  # nvidia-smi --query-gpu=... --format=csv,...


def test_gpu_host_with_driver_560(tmp_path: Path) -> None:
    tasks = plan(tmp_path, facts(nvidia_smi=T4_560))
    assert tasks["NVIDIA driver new enough"].status == "ok"
    toolkit = tasks["NVIDIA container toolkit"]
    assert toolkit.status == "changed"
    assert any("nvidia-container-toolkit" in c for c in toolkit.commands)
    assert any("nvidia.github.io/libnvidia-container/gpgkey" in c for c in toolkit.commands)
    merge = tasks["Docker uses the NVIDIA runtime by default"]
    assert merge.status == "changed"
    assert '"default-runtime": "nvidia"' in merge.diff
    assert '"path": "nvidia-container-runtime"' in merge.diff
    assert tasks["handler: restart docker"].status == "changed"
    assert tasks["Simulation images"].msg.endswith(
        "deepracer-simapp:6.0.4-gpu, minio/minio:latest from pull"
    )


def test_gpu_merge_keeps_what_daemon_json_has(tmp_path: Path) -> None:
    existing = {
        "/etc/docker/daemon.json": {
            "exists": True,
            "type": "file",
            "sha256": "x",
            "mode": "0644",
            "content": '{"log-driver": "journald", "runtimes": {"other": {"path": "o"}}}',
        }
    }
    tasks = plan(tmp_path, facts(nvidia_smi=T4_560, files=existing))
    diff = tasks["Docker uses the NVIDIA runtime by default"].diff
    assert '"log-driver": "journald"' in diff and '"other"' in diff


def test_gpu_driver_535_is_refused_clearly(tmp_path: Path) -> None:
    tasks = plan(tmp_path, facts(nvidia_smi=T4_560.replace("560.35.03", "535.183.01")))
    check = tasks["NVIDIA driver new enough"]
    assert check.status == "failed"
    assert "535.183.01 is too old" in check.msg and "560 or later" in check.msg
    assert "NVIDIA container toolkit" not in tasks  # the host stops there


def test_gpu_without_driver_says_what_to_install(tmp_path: Path) -> None:
    tasks = plan(tmp_path, facts(nvidia_pci=1, gpu_error=None))
    msg = tasks["NVIDIA driver present"].msg
    assert tasks["NVIDIA driver present"].status == "failed"
    assert "no working driver" in msg and "nvidia-driver-560" in msg


def test_cpu_host_gets_no_gpu_tasks(tmp_path: Path) -> None:
    tasks = plan(tmp_path, facts())
    assert tasks["NVIDIA container toolkit"].status == "skipped"
    assert tasks["Xorg as a systemd unit"].status == "skipped"
    assert tasks["Simulation images"].msg.endswith("6.0.4-cpu, minio/minio:latest from pull")
    assert (
        tasks[
            "Swarm (trainer manages, the others join) and the overlay network sagemaker-local"
        ].status
        == "skipped"
    )  # one host: no swarm


def test_opengl_host_gets_the_xorg_unit(tmp_path: Path) -> None:
    tasks = plan(tmp_path, facts(), opengl=True)
    unit = tasks["Xorg as a systemd unit"]
    assert unit.status == "changed"
    assert "/usr/bin/Xorg :99" in unit.diff and "-nolisten tcp" in unit.diff
    assert 'Driver "dummy"' in tasks["Xorg configuration"].diff
    assert tasks["Xorg running (display xorg_display)"].status == "changed"
    # root's X server: the cookie is root's alone (a 0644 cookie lets any local user in)
    assert "chmod 0600 /var/lib/drfleet/Xauthority" in unit.diff and "0644" not in unit.diff


def test_an_xorg_display_that_is_not_a_display_number_is_refused(tmp_path: Path) -> None:
    """It goes into the unit's `sh -c '...'` line: only `:N` gets there."""
    tasks = plan(tmp_path, facts(), {"xorg_display": ":0' ; touch /tmp/pwned ; '"}, opengl=True)
    check = tasks["Xorg display is a display number"]
    assert check.status == "failed" and "like :99" in check.msg
    assert "Xorg as a systemd unit" not in tasks  # the host stops there


@pytest.mark.parametrize(
    "os_facts",
    [
        {"id": "centos", "version": "7", "pretty": "CentOS Linux 7"},
        {"id": "ubuntu", "version": "20.04", "pretty": "Ubuntu 20.04.6 LTS"},
        {"id": "debian", "version": "11", "pretty": "Debian GNU/Linux 11 (bullseye)"},
    ],
)
def test_unsupported_os_is_refused(tmp_path: Path, os_facts: dict[str, str]) -> None:
    tasks = plan(tmp_path, facts(os={**os_facts, "codename": ""}))
    first = tasks["Supported operating system"]
    assert first.status == "failed"
    assert os_facts["pretty"] in first.msg and "Ubuntu 22.04 or later" in first.msg
    assert len(tasks) == 1


def test_the_documented_inventory_overrides_are_honoured(tmp_path: Path) -> None:
    """provision.yml's variables are defaults: the inventory's all/group/host vars win."""

    def run(host_vars: str) -> dict[str, TaskResult]:
        inv_file = tmp_path / "inv.yml"
        inv_file.write_text(
            "all:\n"
            "  vars: {base_packages: [jq, htop]}\n"
            "  hosts:\n"
            "    g1:\n"
            "      roles: [trainer, robomaker]\n"
            "      opengl: true\n"
            f"      vars: {host_vars}\n"
        )
        inv = inventory.load(inv_file)
        book = loader.load(REPO / "playbooks" / "provision.yml")
        options = RunOptions(check=True, extra_vars={"drfc_images": IMAGES})
        report = Runner(book, inv, inv.select(), options).simulate({"g1": facts(nvidia_smi=T4_560)})
        return {t.name: t for t in report["g1"].tasks}

    tasks = run("{docker_package: docker-ce, xorg_display: ':5'}")
    assert tasks["Docker engine (Debian's docker.io)"].status == "skipped"
    assert tasks["Docker engine (Docker's docker-ce)"].status == "changed"
    assert "htop" in tasks["Base packages"].msg
    assert "/usr/bin/Xorg :5 " in tasks["Xorg as a systemd unit"].diff
    tasks = run("{nvidia_min_driver: 570}")
    assert tasks["NVIDIA driver new enough"].status == "failed"  # 560 < the 570 asked for
    assert "570 or later" in tasks["NVIDIA driver new enough"].msg


def test_apt_update_waits_for_the_lists_lock_and_fails_at_once_otherwise(tmp_path: Path) -> None:
    """DPkg::Lock::Timeout does not cover `apt-get update`'s lists lock: while another apt
    holds it (one a killed controller left running), the update is tried again; any other
    error fails at once with apt's message and status 100. Run in a real shell against a
    stand-in apt-get that prints what apt prints."""
    import os
    import subprocess

    from drfleet.playbook.modules.apt import apt_update

    fake = tmp_path / "apt-get"
    fake.write_text(
        "#!/bin/sh\n"
        'n=$(cat "$0.count" 2>/dev/null || echo 0); echo $((n+1)) > "$0.count"\n'
        'if [ "$MODE" = lock ] && [ "$n" -lt 1 ]; then\n'
        "  echo 'E: Could not get lock /var/lib/apt/lists/lock. It is held by process 129'\n"
        "  exit 100\nfi\n"
        'if [ "$MODE" = broken ]; then echo "E: The repository is not signed."; exit 100; fi\n'
        "echo 'Reading package lists...'\n"
    )
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    line = apt_update().render()
    waited = subprocess.run(
        ["sh", "-c", line], env={**env, "MODE": "lock"}, capture_output=True, text=True
    )
    assert waited.returncode == 0 and "Reading package lists" in waited.stdout
    assert (tmp_path / "apt-get.count").read_text().strip() == "2"  # tried again once
    (tmp_path / "apt-get.count").unlink()
    broken = subprocess.run(
        ["sh", "-c", line], env={**env, "MODE": "broken"}, capture_output=True, text=True
    )
    assert broken.returncode == 100 and "not signed" in broken.stderr
    assert (tmp_path / "apt-get.count").read_text().strip() == "1"  # no waiting on other errors


def test_a_fresh_cloud_host_is_waited_for_with_the_reason_and_a_settled_one_is_not(
    tmp_path: Path,
) -> None:
    name = "First boot settled (cloud-init done, apt's lock free)"
    booting = {"cloud_init": "running", "apt_lock": "unattended-upgr (pid 812)"}
    wait = plan(tmp_path, facts(boot=booting))[name]
    assert wait.status == "changed"
    assert wait.msg == (
        "would wait for cloud-init's first boot and apt's lock, held by unattended-upgr (pid 812)"
    )
    assert any("cloud-init status --wait" in c for c in wait.commands)
    assert any("/var/lib/dpkg/lock-frontend" in c for c in wait.commands)
    for settled in ({"cloud_init": "done", "apt_lock": ""}, {"cloud_init": "absent"}):
        assert plan(tmp_path, facts(boot=settled))[name].status == "ok"


def test_the_probe_finds_who_holds_a_lock_in_proc_locks() -> None:
    from drfleet.hosts.probe import parse_locks

    text = (
        "1: POSIX  ADVISORY  WRITE 812 00:2b:1048601 0 EOF\n"
        "1: -> POSIX  ADVISORY  WRITE 990 00:2b:1048601 0 EOF\n"  # a waiter, not the holder
        "2: OFDLCK ADVISORY  READ  -1 00:05:77 0 EOF\n"
        "3: FLOCK  ADVISORY  WRITE 14 fd:01:5 0 EOF\n"
    )
    assert parse_locks(text) == {"00:2b:1048601": 812, "fd:01:5": 14}

import json
import shutil
import subprocess
import sys
from pathlib import Path

from drfleet import probe
from drfleet.facts import PROBE_SOURCE, probe_command


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

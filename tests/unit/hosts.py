"""Facts of recorded hosts (tests/unit/data/hosts/), made by the probe's own parsers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from drfleet.hosts import probe

DATA = Path(__file__).parent / "data" / "hosts"


def recorded(name: str, *, nvidia_smi: str | None = None, **over: Any) -> dict[str, Any]:
    """The probe's JSON for host `name`; nvidia_smi: what `nvidia-smi --query-gpu=...` printed
    (a GPU host); `over` replaces whole sections afterwards."""
    d = DATA / name

    def read(f: str) -> str:
        p = d / f
        return p.read_text() if p.exists() else ""

    info = json.loads(read("docker-info.json")) if (d / "docker-info.json").exists() else None
    facts: dict[str, Any] = {
        "probe": 1,
        "hostname": name,
        "user": "root",
        "login_user": "ubuntu",
        "uid": 0,
        "os": probe.parse_os_release(read("os-release")),
        "arch": read("arch").strip(),
        "python": read("python").strip(),
        "vcpus": int(read("nproc")),
        "memory_mb": probe.parse_meminfo(read("meminfo")),
        "disk": {"path": "/var/lib/docker", "free_mb": 50000, "total_mb": 100000},
        "gpus": probe.parse_nvidia_smi(nvidia_smi) if nvidia_smi else [],
        "gpu_error": None,
        "nvidia_pci": len(nvidia_smi.splitlines()) if nvidia_smi else 0,
        "systemd": True,
        "docker": probe.parse_docker_info(info, installed=info is not None),
        "packages": probe.parse_dpkg(read("dpkg")),
        "apt_updated_at": 0,
        "net": {
            "addresses": probe.parse_ip_addr(read("ip-addr")),
            "routes": probe.parse_routes(read("ip-route")),
            "default_source": probe.default_source(read("ip-route-get")),
        },
        "users": {"ubuntu": {"exists": True, "groups": ["ubuntu"], "home": "/home/ubuntu"}},
    }
    facts.update(over)
    return facts

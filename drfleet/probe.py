"""The fact probe. Its source is sent to each host and run as `python3 -c SOURCE PARAMS`,
so it must use only the standard library of Python 3.8+ and print exactly one JSON object.
It is also importable, so its parsers are unit-tested like any other module."""

import http.client
import json
import os
import platform
import pwd
import shutil
import socket
import subprocess
import sys
from typing import Any, Dict, List, Optional, Tuple

DOCKER_SOCK = "/var/run/docker.sock"


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 5.0) -> None:
        http.client.HTTPConnection.__init__(self, "localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def docker_api(path: str, sock: str = DOCKER_SOCK) -> Any:
    conn = _UnixHTTP(sock)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise OSError("docker API %s: HTTP %d" % (path, resp.status))
        return json.loads(body.decode())
    finally:
        conn.close()


def parse_os_release(text: str) -> Dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            out[key.strip()] = value
    return {
        "id": out.get("ID", ""),
        "version": out.get("VERSION_ID", ""),
        "codename": out.get("VERSION_CODENAME", ""),
        "pretty": out.get("PRETTY_NAME", ""),
    }


def parse_meminfo(text: str) -> int:
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def parse_nvidia_smi(text: str) -> List[Dict[str, Any]]:
    gpus = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) >= 4 and cells[0]:
            try:
                memory = int(float(cells[2]))
            except ValueError:
                memory = 0
            gpus.append(
                {"index": cells[0], "name": cells[1], "memory_mb": memory, "driver": cells[3]}
            )
    return gpus


def _read(path: str, default: str = "") -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return default


def gpus() -> Tuple[List[Dict[str, Any]], Optional[str]]:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return [], None
    try:
        out = subprocess.run(
            [
                smi,
                "--query-gpu=index,name,memory.total,driver_version",
                "--format=csv,noheader,nounits",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], "nvidia-smi failed: %s" % exc
    if out.returncode != 0:
        return [], "nvidia-smi failed: " + out.stderr.decode(errors="replace").strip()[-300:]
    return parse_nvidia_smi(out.stdout.decode(errors="replace")), None


def docker() -> Dict[str, Any]:
    info: Dict[str, Any] = {
        "installed": bool(shutil.which("dockerd") or shutil.which("docker")),
        "running": False,
        "version": None,
        "error": None,
        "swarm": {
            "state": "inactive",
            "node_id": "",
            "is_manager": False,
            "node_addr": "",
            "cluster_id": "",
        },
    }
    if not os.path.exists(DOCKER_SOCK):
        if info["installed"]:
            info["error"] = "dockerd is not running (no %s)" % DOCKER_SOCK
        return info
    try:
        data = docker_api("/info")
    except (OSError, ValueError) as exc:
        info["error"] = "cannot reach dockerd: %s" % exc
        return info
    swarm = data.get("Swarm") or {}
    info.update(
        running=True,
        version=data.get("ServerVersion"),
        runtimes=sorted((data.get("Runtimes") or {}).keys()),
        default_runtime=data.get("DefaultRuntime"),
        storage_driver=data.get("Driver"),
        swarm={
            "state": swarm.get("LocalNodeState") or "inactive",
            "node_id": swarm.get("NodeID") or "",
            "is_manager": bool(swarm.get("ControlAvailable")),
            "node_addr": swarm.get("NodeAddr") or "",
            "cluster_id": (swarm.get("Cluster") or {}).get("ID", ""),
        },
    )
    return info


def disk(path: str) -> Dict[str, Any]:
    while path != "/" and not os.path.exists(path):
        path = os.path.dirname(path)
    st = os.statvfs(path)
    return {
        "path": path,
        "free_mb": st.f_bavail * st.f_frsize // 2**20,
        "total_mb": st.f_blocks * st.f_frsize // 2**20,
    }


def gather(params: Dict[str, Any]) -> Dict[str, Any]:
    try:
        vcpus = len(os.sched_getaffinity(0))
    except AttributeError:
        vcpus = os.cpu_count() or 0
    gpu_list, gpu_error = gpus()
    uid = os.getuid()
    return {
        "probe": 1,
        "hostname": socket.gethostname(),
        "user": pwd.getpwuid(uid).pw_name,
        "login_user": os.environ.get("SUDO_USER") or pwd.getpwuid(uid).pw_name,
        "uid": uid,
        "os": parse_os_release(_read("/etc/os-release")),
        "arch": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "vcpus": vcpus,
        "memory_mb": parse_meminfo(_read("/proc/meminfo")),
        "disk": disk("/var/lib/docker"),
        "gpus": gpu_list,
        "gpu_error": gpu_error,
        "systemd": os.path.isdir("/run/systemd/system"),
        "docker": docker(),
    }


def main(argv: List[str]) -> None:
    params = json.loads(argv[1]) if len(argv) > 1 else {}
    sys.stdout.write(json.dumps(gather(params), sort_keys=True))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv)

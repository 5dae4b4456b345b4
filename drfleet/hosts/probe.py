"""The fact probe. Its source is sent to each host and run as `python3 -c SOURCE PARAMS`,
so it must use only the standard library of Python 3.8+ and print exactly one JSON object.
It is also importable, so its parsers are unit-tested like any other module."""

import grp
import hashlib
import http.client
import json
import os
import platform
import pwd
import shutil
import socket
import stat
import subprocess
import sys
from typing import Any

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


def parse_os_release(text: str) -> dict[str, str]:
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


def parse_nvidia_smi(text: str) -> list[dict[str, Any]]:
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


def gpus() -> tuple[list[dict[str, Any]], str | None]:
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


def nvidia_pci() -> int:
    """NVIDIA display controllers on the PCI bus: a GPU is there even without a driver."""
    count = 0
    base = "/sys/bus/pci/devices"
    try:
        devices = os.listdir(base)
    except OSError:
        return 0
    for dev in devices:
        vendor = _read(os.path.join(base, dev, "vendor")).strip()
        klass = _read(os.path.join(base, dev, "class")).strip()
        if vendor == "0x10de" and klass.startswith("0x03"):
            count += 1
    return count


def docker() -> dict[str, Any]:
    installed = bool(shutil.which("dockerd") or shutil.which("docker"))
    if not os.path.exists(DOCKER_SOCK):
        return parse_docker_info(None, installed, "dockerd is not running (no %s)" % DOCKER_SOCK)
    try:
        data = docker_api("/info")
    except (OSError, ValueError) as exc:
        return parse_docker_info(None, installed, "cannot reach dockerd: %s" % exc)
    return parse_docker_info(data, installed)


def parse_docker_info(
    data: dict[str, Any] | None, installed: bool, error: str | None = None
) -> dict[str, Any]:
    """dockerd's GET /info (`docker info --format '{{json .}}'`), or None when it cannot be
    asked (error says why) -> the docker section."""
    info: dict[str, Any] = {
        "installed": installed,
        "running": False,
        "version": None,
        "error": error if installed else None,
        "swarm": {
            "state": "inactive",
            "node_id": "",
            "is_manager": False,
            "node_addr": "",
            "cluster_id": "",
            "managers": [],
        },
    }
    if data is None:
        return info
    swarm = data.get("Swarm") or {}
    info.update(
        running=True,
        error=None,
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
            # the managers this node knows of (a worker's only way to its swarm)
            "managers": [
                {"node_id": m.get("NodeID") or "", "addr": m.get("Addr") or ""}
                for m in swarm.get("RemoteManagers") or []
            ],
        },
    )
    return info


def disk(path: str) -> dict[str, Any]:
    while path != "/" and not os.path.exists(path):
        path = os.path.dirname(path)
    st = os.statvfs(path)
    return {
        "path": path,
        "free_mb": st.f_bavail * st.f_frsize // 2**20,
        "total_mb": st.f_blocks * st.f_frsize // 2**20,
    }


def base() -> dict[str, Any]:
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
        "nvidia_pci": nvidia_pci(),
        "systemd": os.path.isdir("/run/systemd/system"),
    }


def _run(argv: list[str]) -> str:
    try:
        out = subprocess.run(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.decode(errors="replace")


def parse_dpkg(text: str) -> dict[str, str]:
    """`Package<TAB>Status-Abbrev<TAB>Version` lines -> installed packages and versions."""
    out = {}
    for line in text.splitlines():
        cells = line.split("\t")
        if len(cells) == 3 and cells[1].strip() == "ii":
            out[cells[0].split(":")[0]] = cells[2]
    return out


def parse_systemctl_show(text: str) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for block in text.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props.get("Id"):
            out[props["Id"]] = {
                "load": props.get("LoadState", ""),
                "active": props.get("ActiveState", ""),
                "enabled": props.get("UnitFileState", ""),
                "need_reload": props.get("NeedDaemonReload", ""),
            }
    return out


def apt_lists_time(base: str = "/var/lib/apt/lists") -> float:
    """When the package lists were last fetched (0: never, or cleaned away)."""
    newest = 0.0
    try:
        for name in os.listdir(base):
            if "_Packages" in name:
                newest = max(newest, os.stat(os.path.join(base, name)).st_mtime)
    except OSError:
        return 0.0
    return newest


def units(names: list[str]) -> dict[str, dict[str, str]]:
    if not names:
        return {}
    text = _run(
        [
            "systemctl",
            "show",
            "--no-pager",
            "-p",
            "Id,LoadState,ActiveState,UnitFileState,NeedDaemonReload",
            *names,
        ]
    )
    found = parse_systemctl_show(text)
    # systemctl names the unit by its Id; ask for "docker" and it answers "docker.service"
    return {
        n: found.get(
            n if "." in n else n + ".service",
            {"load": "not-found", "active": "inactive", "enabled": ""},
        )
        for n in names
    }


def files(paths: list[str], contents: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in paths:
        try:
            st = os.lstat(path)
        except OSError:
            out[path] = {"exists": False}
            continue
        info: dict[str, Any] = {
            "exists": True,
            "mode": "%04o" % (st.st_mode & 0o7777),
            "uid": st.st_uid,
            "gid": st.st_gid,
            "size": st.st_size,
        }
        try:
            info["owner"] = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            info["owner"] = str(st.st_uid)
        try:
            info["group"] = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            info["group"] = str(st.st_gid)
        if stat.S_ISLNK(st.st_mode):
            info.update(type="link", target=os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            info["type"] = "directory"
        elif stat.S_ISREG(st.st_mode):
            info["type"] = "file"
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
                info["sha256"] = hashlib.sha256(data).hexdigest()
                if path in contents and len(data) <= 1 << 20:
                    info["content"] = data.decode("utf-8", errors="replace")
            except OSError as exc:
                info["error"] = str(exc)
        else:
            info["type"] = "other"
        out[path] = info
    return out


def users(names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            out[name] = {"exists": False, "groups": []}
            continue
        groups = [g.gr_name for g in grp.getgrall() if name in g.gr_mem]
        groups.append(grp.getgrgid(pw.pw_gid).gr_name)
        out[name] = {"exists": True, "groups": sorted(set(groups)), "home": pw.pw_dir}
    return out


# What an image's identity covers of `docker image inspect`'s Config: the OCI image config's
# run-time fields (image-spec config.md). The rest of docker's Config is the container's.
IDENTITY_CONFIG = (
    "User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels",
    "StopSignal", "Shell", "Healthcheck", "OnBuild", "ArgsEscaped",
)  # fmt: skip


def identity(doc: dict[str, Any]) -> str:
    """An image as both of docker's image stores report it alike. The classic store names an
    image by its config's digest, the containerd store (docker 29's default, Ubuntu 24.04's
    docker.io) by its manifest's (moby/moby#48401), so the same image has two ids. This hashes
    what runs: its layers (diff ids), platform, creation time and run-time config, as
    `docker image inspect` shows them."""
    config = doc.get("Config") or {}
    basis = {
        "layers": list((doc.get("RootFS") or {}).get("Layers") or []),
        "os": doc.get("Os") or "",
        "architecture": doc.get("Architecture") or "",
        "variant": doc.get("Variant") or "",
        "created": doc.get("Created") or "",
        "config": {k: config[k] for k in IDENTITY_CONFIG if config.get(k)},
    }
    text = json.dumps(basis, sort_keys=True, separators=(",", ":"))
    return "content:" + hashlib.sha256(text.encode()).hexdigest()


def identity_source() -> str:
    """identity() as a host runs it in a script of its own (stdlib, Python 3.9+)."""
    import inspect

    return (
        "import hashlib, json\nfrom typing import Any\n"
        + "IDENTITY_CONFIG = %r\n" % (IDENTITY_CONFIG,)
        + inspect.getsource(identity)
    )


def images() -> dict[str, str]:
    """tag -> the image's identity (see identity)."""
    out = {}
    for img in docker_api("/images/json"):
        tags = [t for t in img.get("RepoTags") or [] if t != "<none>:<none>"]
        if tags:
            ident = identity(docker_api("/images/%s/json" % img["Id"]))
            out.update(dict.fromkeys(tags, ident))
    return out


# What dockerd programs for an encrypted overlay (IPsec ESP, AES-GCM), tried in a network
# namespace of its own that disappears with the command: nothing on the host changes.
ESP_TRIAL = [
    "unshare", "--net", "ip", "xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2",
    "proto", "esp", "spi", "0x100", "reqid", "1", "mode", "transport",
    "aead", "rfc4106(gcm(aes))", "0x" + "11" * 20, "64",
]  # fmt: skip


def ipsec() -> dict[str, Any]:
    """Whether this kernel can carry an encrypted overlay (needs root)."""
    try:
        proc = subprocess.run(ESP_TRIAL, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"esp": False, "error": str(exc)}
    return {"esp": proc.returncode == 0, "error": proc.stderr.strip()[-300:]}


def networks() -> dict[str, Any]:
    out = {}
    for net in docker_api("/networks"):
        subnets = [
            c.get("Subnet")
            for c in ((net.get("IPAM") or {}).get("Config") or [])
            if c.get("Subnet")
        ]
        out[net["Name"]] = {
            "id": net["Id"],
            "driver": net.get("Driver"),
            "scope": net.get("Scope"),
            "attachable": net.get("Attachable"),
            "encrypted": "encrypted" in (net.get("Options") or {}),
            "subnets": subnets,
            "labels": net.get("Labels") or {},
        }
    return out


def nodes() -> list[dict[str, Any]]:
    return [
        {
            "id": n["ID"],
            "hostname": (n.get("Description") or {}).get("Hostname", ""),
            "addr": (n.get("Status") or {}).get("Addr", ""),
            "state": (n.get("Status") or {}).get("State", ""),
            "role": (n.get("Spec") or {}).get("Role", ""),
            "labels": (n.get("Spec") or {}).get("Labels") or {},
            "version": (n.get("Version") or {}).get("Index", 0),
        }
        for n in docker_api("/nodes")
    ]


def managers_reach(swarm: dict[str, Any], timeout: float = 3.0) -> dict[str, str]:
    """A swarm worker's managers: address -> "" when it takes a TCP connection on its swarm
    port, else why not. A manager (or a host in no swarm) asks nothing: {}."""
    if swarm.get("is_manager") or swarm.get("state", "inactive") == "inactive":
        return {}
    out = {}
    for m in swarm.get("managers") or []:
        addr = m.get("addr") or ""
        host, _, port = addr.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
            out[addr] = ""
        except (OSError, ValueError) as exc:
            out[addr] = str(exc) or type(exc).__name__
    return out


def parse_ip_addr(text: str) -> list[dict[str, str]]:
    """`ip -4 -o addr show` -> [{"dev", "cidr"}]."""
    out = []
    for line in text.splitlines():
        cells = line.split()
        if len(cells) >= 4 and cells[2] == "inet":
            out.append({"dev": cells[1], "cidr": cells[3]})
    return out


def parse_routes(text: str) -> list[str]:
    """`ip -4 route show` -> destination networks (the default route left out)."""
    out = []
    for line in text.splitlines():
        dest = line.split()[0] if line.strip() else ""
        if dest and dest != "default":
            out.append(dest if "/" in dest else dest + "/32")
    return out


def default_source(text: str) -> str:
    """`ip -4 route get 1.1.1.1` (a lookup; nothing is sent) -> the source address."""
    cells = text.split()
    return cells[cells.index("src") + 1] if "src" in cells else ""


PENDING = "/var/lib/drfleet/pending-handlers"  # names.PENDING_HANDLERS (runs standalone)


def section(out: dict[str, Any], name: str, empty: Any, fn: Any, *args: Any) -> None:
    """out[name] = fn(*args); if that fails, out[name] stays the empty value and the error
    goes to out["errors"][name], apart from the data (a reader never mistakes one for the
    other)."""
    try:
        out[name] = fn(*args)
    except (OSError, ValueError, KeyError) as exc:
        out[name] = empty
        out.setdefault("errors", {})[name] = "%s: %s" % (name, exc)


APT_LOCKS = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock", "/var/lib/apt/lists/lock")


def parse_locks(text: str) -> dict[str, int]:
    """/proc/locks -> "maj:min:inode" -> the pid holding a lock on it (waiters, "->", and
    OFD locks, pid -1, left out)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 6 or "->" in parts:
            continue
        try:
            pid = int(parts[4])
        except ValueError:
            continue
        if pid > 0:
            out[parts[5]] = pid
    return out


def boot() -> dict[str, str]:
    """What holds a freshly booted cloud host's apt: cloud-init still running its first boot
    (absent, running, done or disabled, read as `cloud-init status` reads it: result.json
    is written at its end), and the process holding dpkg's or apt's lock, if any."""
    state = "absent"
    if os.path.exists("/usr/bin/cloud-init"):
        state = "running"
        if os.path.exists("/run/cloud-init/result.json"):
            state = "done"
        elif any(
            os.path.exists(p)
            for p in ("/etc/cloud/cloud-init.disabled", "/run/cloud-init/disabled")
        ):
            state = "disabled"
    held = parse_locks(_read("/proc/locks"))
    holder = ""
    for path in APT_LOCKS:
        try:
            st = os.stat(path)
        except OSError:
            continue
        pid = held.get(f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}")
        if pid:
            holder = "%s (pid %d)" % (_read("/proc/%d/comm" % pid).strip() or "?", pid)
            break
    return {"cloud_init": state, "apt_lock": holder}


def gather(params: dict[str, Any]) -> dict[str, Any]:
    """Base facts, docker, and whatever sections the params ask for."""
    only = params.get("only")
    want = set(params.get("sections") or [])
    out: dict[str, Any] = {}
    if not only:
        out.update(base())
        out["docker"] = docker()
    sections = set(only or []) | want
    running = (
        (out.get("docker") or docker())["running"]
        if sections & {"images", "networks", "nodes"}
        else False
    )
    if "packages" in sections:
        out["packages"] = parse_dpkg(
            _run(["dpkg-query", "-W", "-f", "${Package}\t${db:Status-Abbrev}\t${Version}\n"])
        )
        out["apt_updated_at"] = apt_lists_time()
    if "units" in sections:
        out["units"] = units(list(params.get("units") or []))
    if "files" in sections:
        out["files"] = files(list(params.get("files") or []), list(params.get("contents") or []))
    if "users" in sections:
        login = os.environ.get("SUDO_USER") or pwd.getpwuid(os.getuid()).pw_name
        out["users"] = users(sorted(set(params.get("users") or []) | {login}))
    if "images" in sections:
        out["images"] = {}
        if running:
            section(out, "images", {}, images)
    if "networks" in sections:
        out["networks"] = {}
        if running:
            section(out, "networks", {}, networks)
    if "nodes" in sections:
        out["nodes"] = []
        if (out.get("docker") or docker())["swarm"]["is_manager"]:
            section(out, "nodes", [], nodes)
    if "net" in sections:
        out["net"] = {
            "addresses": parse_ip_addr(_run(["ip", "-4", "-o", "addr", "show"])),
            "routes": parse_routes(_run(["ip", "-4", "route", "show"])),
            "default_source": default_source(_run(["ip", "-4", "route", "get", "1.1.1.1"])),
        }
    if "ipsec" in sections:
        out["ipsec"] = ipsec()
    if "managers" in sections:
        out["managers"] = managers_reach((out.get("docker") or docker())["swarm"])
    if "boot" in sections:
        section(out, "boot", {}, boot)
    if "pending" in sections:
        out["pending"] = [h for h in _read(PENDING).splitlines() if h]
    if "docker" in sections and only:
        out["docker"] = docker()
    return out


def main(argv: list[str]) -> None:
    params = json.loads(argv[1]) if len(argv) > 1 else {}
    sys.stdout.write(json.dumps(gather(params), sort_keys=True))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv)

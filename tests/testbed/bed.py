"""A test bed of real hosts on one machine (see ../shared/design/TESTBED.md).

Each host is a container booting systemd with sshd, a non-root sudo user `fleet` and its own
SSH host keys; all hosts sit on a private /24 of their own. Everything created carries the
label `drfleet.testbed=<bed id>` and is removed by `close()`, and by the next bed if this
process died before it could clean up. Nothing without that label is ever touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import ipaddress
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import yaml

RECIPE = Path(__file__).with_name("build-rootfs.sh")
CACHE = Path(os.environ.get("DRFLEET_TESTBED_CACHE", "/var/cache/drfleet-testbed"))
LABEL = "drfleet.testbed"
OWNER = "drfleet.testbed.owner"  # "<machine>:<pid>" of the process that made it
USER = "fleet"
_SUBNETS = [ipaddress.ip_network(f"10.213.{i}.0/24") for i in range(1, 250)]


@functools.cache
def kernel_has_esp() -> bool:
    """Whether this machine's kernel, which every test host shares, does the IPsec ESP an
    encrypted overlay needs (the probe's own trial). Where it does, the beds use the
    default (encrypted); where it does not, they must say overlay_encrypted: false."""
    from drfleet.hosts.probe import ESP_TRIAL

    return subprocess.run(ESP_TRIAL, capture_output=True, check=False).returncode == 0


def _client() -> docker.DockerClient:
    return docker.from_env(timeout=120)


def recipe_hash() -> str:
    return hashlib.sha256(RECIPE.read_bytes()).hexdigest()[:12]


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def ensure_image(client: docker.DockerClient | None = None) -> str:
    """The host image for the current recipe: from docker, else from the cached root fs
    tarball, else built with debootstrap (about 50 s, once per recipe change)."""
    client = client or _client()
    digest = recipe_hash()
    return rootfs_image(
        client, "image", "drfleet-testbed/host", digest, [str(RECIPE)], f"rootfs-{digest}.tar"
    )


def rootfs_image(
    client: docker.DockerClient, lock: str, repo: str, tag: str, build: list[str], tar: str
) -> str:
    """repo:tag from docker, else imported from the cached root fs tarball (CACHE/tar), else
    that tarball built first (`bash BUILD... TAR`, debootstrap, once per recipe); boots
    /sbin/init when the root has one, else runs bash."""
    image = f"{repo}:{tag}"
    with _lock(lock):
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.get(image)
            return image
        path = CACHE / tar
        if not path.exists():
            subprocess.run(["bash", *build, str(path)], check=True)
        init = "/sbin/init" if repo.startswith("drfleet-testbed/") else "bash"
        client.api.import_image_from_file(
            str(path), repository=repo, tag=tag, changes=[f'CMD ["{init}"]']
        )
    return image


UBUNTU_RECIPE = Path(__file__).with_name("build-ubuntu-rootfs.sh")
UBUNTU_RELEASES = {"24.04": "noble", "22.04": "jammy"}


def ensure_ubuntu_image(version: str = "24.04") -> str:
    """An Ubuntu host image as Canonical's EC2 image boots (build-ubuntu-rootfs.sh): from
    docker, else from the cached root fs tarball, else built from Ubuntu's archive (~50 s)."""
    client = _client()
    release = UBUNTU_RELEASES[version]
    digest = hashlib.sha256(UBUNTU_RECIPE.read_bytes()).hexdigest()[:12]
    return rootfs_image(
        client,
        f"ubuntu-{release}",
        "drfleet-testbed/ubuntu",
        f"{release}-{digest}",
        [str(UBUNTU_RECIPE), release],
        f"ubuntu-{release}-{digest}.tar",
    )


DOCKER_HOST_STEPS = (
    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
    "--no-install-recommends docker.io >/dev/null && systemctl enable docker >/dev/null 2>&1"
)


def ensure_docker_host_image(workdir: Path) -> str:
    """A host image that already has the Docker engine (for tests of what runs on a ready
    host, such as the agent): baked once from the base image, cached as an image."""
    client = _client()
    base = ensure_image(client)
    digest = hashlib.sha256((base + DOCKER_HOST_STEPS).encode()).hexdigest()[:12]
    tag = f"drfleet-testbed/docker-host:{digest}"
    with _lock("docker-host"):
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.get(tag)
            return tag
        with TestBed(1, workdir, image=base) as bed:
            bed.exec("h1", DOCKER_HOST_STEPS)
            bed.bake("h1", tag)
    return tag


def _me() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"


def _alive(owner: str) -> bool:
    node, _, pid = owner.rpartition(":")
    if node != os.uname().nodename or not pid.isdigit():
        return True  # not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_orphans(client: docker.DockerClient | None = None) -> int:
    """Removes test-bed resources whose creating process is gone (a crashed earlier run)."""
    client = client or _client()
    dead: set[str] = set()
    for kind in ("containers", "networks", "volumes"):
        coll = getattr(client, kind)
        items = (
            coll.list(all=True, filters={"label": LABEL})
            if kind == "containers"
            else coll.list(filters={"label": LABEL})
        )
        for item in items:
            labels = item.attrs.get("Labels") or item.attrs.get("Config", {}).get("Labels") or {}
            if not _alive(labels.get(OWNER, "")):
                dead.add(labels.get(LABEL, ""))
    for bed in dead:
        _remove_bed(client, bed)
    return len(dead)


def _remove_bed(client: docker.DockerClient, bed: str) -> None:
    flt = {"label": f"{LABEL}={bed}"}
    for c in client.containers.list(all=True, filters=flt, ignore_removed=True):
        with contextlib.suppress(docker.errors.NotFound):
            c.remove(force=True, v=True)
    for n in client.networks.list(filters=flt):
        with contextlib.suppress(docker.errors.NotFound):
            n.remove()
    for v in client.volumes.list(filters=flt):
        with contextlib.suppress(docker.errors.NotFound):
            v.remove(force=True)


def _free_subnet(client: docker.DockerClient) -> ipaddress.IPv4Network:
    used = []
    for net in client.networks.list():
        for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
            if cfg.get("Subnet"):
                used.append(ipaddress.ip_network(cfg["Subnet"], strict=False))
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    for line in routes.splitlines():
        dest = line.split()[0]
        if "/" in dest:
            used.append(ipaddress.ip_network(dest, strict=False))
    for cand in _SUBNETS:
        if not any(cand.overlaps(u) for u in used):
            return cand
    raise RuntimeError("no free /24 in 10.213.0.0/16 for the test bed")


def bed_network(
    client: docker.DockerClient, name: str, labels: dict[str, str]
) -> tuple[Any, ipaddress.IPv4Network]:
    """A bridge network on a /24 no other network or route uses, and that /24. Chosen and
    made under a lock: the suite's two streams (scripts/test.sh) start beds side by side,
    and two of them must not pick the same free /24."""
    with _lock("subnet"):
        subnet = _free_subnet(client)
        gateway = str(subnet.network_address + 1)
        ipam = docker.types.IPAMConfig(
            pool_configs=[docker.types.IPAMPool(subnet=str(subnet), gateway=gateway)]
        )
        return client.networks.create(name, driver="bridge", ipam=ipam, labels=labels), subnet


def create_host(
    client: docker.DockerClient,
    image: str | None,
    container: str,
    hostname: str,
    address: str,
    network: str,
    labels: dict[str, str],
    instance: bool = False,
) -> None:
    """A host container (created, not started): systemd as PID 1 and a dockerd of its own
    (TESTBED.md), at address on network, with a volume for /var/lib/docker. instance: as an
    EC2 instance's machine is, for the docker an Ubuntu host installs (docker.io 29 on noble):
    /proc/sys writable (it sets IPv6 sysctls in each container's namespace, which a read-only
    /proc/sys refuses) and /var/lib/containerd on a volume (its image store lives there, and
    overlayfs cannot stack on the container's own); volumes() names them."""
    volume = f"{container}-docker"
    binds = {
        "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
        volume: {"bind": "/var/lib/docker", "mode": "rw"},
    }
    for name in volumes(container, instance):
        client.volumes.create(name, labels=labels)
    if instance:
        binds[f"{container}-containerd"] = {"bind": "/var/lib/containerd", "mode": "rw"}
    host_config = client.api.create_host_config(
        # SYS_PTRACE as a real host's root has it: without it, runc cannot enter a container
        # whose first process runs as another user (`docker exec` fails in setns)
        cap_add=["SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE"],
        security_opt=["seccomp=unconfined", "apparmor=unconfined"],
        cgroupns="host",
        binds=binds,
        tmpfs={"/run": "", "/run/lock": ""},
        network_mode=network,
    )
    if instance:  # what `docker run --security-opt systempaths=unconfined` sends
        host_config.update(MaskedPaths=[], ReadonlyPaths=[])
    client.api.create_container(
        image,
        name=container,
        hostname=hostname,
        labels=labels,
        detach=True,
        stop_signal="SIGRTMIN+3",  # what systemd takes as "shut down cleanly"
        host_config=host_config,
        networking_config=client.api.create_networking_config(
            {network: client.api.create_endpoint_config(ipv4_address=address)}
        ),
    )


def volumes(container: str, instance: bool = False) -> list[str]:
    """The volumes create_host makes for a host."""
    return [f"{container}-docker"] + ([f"{container}-containerd"] if instance else [])


@dataclass
class TestHost:
    name: str
    address: str
    container: str
    roles: list[str] = field(default_factory=list)
    host_keys: list[str] = field(default_factory=list)  # "type base64" lines

    __test__ = False  # not a pytest test class


class TestBed:
    """N hosts; `inventory` is an inventory file for them (strict host keys, become: true)."""

    __test__ = False

    def __init__(
        self,
        n: int,
        workdir: Path,
        *,
        roles: dict[str, list[str]] | None = None,
        image: str | None = None,
    ) -> None:
        self.client = _client()
        self.id = f"dftb{secrets.token_hex(3)}"
        self.workdir = workdir
        self.n = n
        self.image = image
        self.roles = roles or {"h1": ["trainer", "robomaker"]}
        self.hosts: dict[str, TestHost] = {}
        self.key = workdir / "id_ed25519"
        self.known_hosts = workdir / "known_hosts"
        self.inventory = workdir / "inventory.yml"
        self._lock = threading.Lock()
        self._closers: list[Callable[[], None]] = []

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> TestBed:
        reap_orphans(self.client)
        self.image = self.image or ensure_image(self.client)
        self.workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.id, "-f", str(self.key)],
            check=True,
        )
        self.network, self.subnet = bed_network(self.client, f"{self.id}-net", self._labels())
        names = [f"h{i}" for i in range(1, self.n + 1)]
        try:
            with ThreadPoolExecutor(max_workers=len(names)) as pool:
                list(pool.map(self._boot, names))
        except BaseException:
            self.close()
            raise
        self.write_inventory()
        return self

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()
        _remove_bed(self.client, self.id)

    def on_close(self, fn: Callable[[], None]) -> None:
        """Runs fn when the bed closes (a tunnel the tests opened to a host, say)."""
        self._closers.append(fn)

    def __enter__(self) -> TestBed:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _labels(self) -> dict[str, str]:
        return {LABEL: self.id, OWNER: _me()}

    def _boot(self, name: str) -> TestHost:
        index = int(name[1:])
        address = str(self.subnet.network_address + 10 + index)
        container = f"{self.id}-{name}"
        create_host(
            self.client, self.image, container, name, address, self.network.name, self._labels()
        )
        self.client.api.start(container)
        host = TestHost(
            name=name,
            address=address,
            container=container,
            roles=self.roles.get(name, ["robomaker"]),
        )
        self._await_ready(host)
        with self._lock:
            self.hosts[name] = host
        return host

    def _await_ready(self, host: TestHost, timeout: float = 90) -> None:
        """Waits for systemd and sshd, installs our public key, reads the host keys."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.exec(host, "systemctl is-system-running --wait", check=False).strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.3)
        else:
            raise RuntimeError(f"{host.name}: systemd did not finish booting: {state!r}")
        while self.exec(host, "systemctl is-active ssh", check=False).strip() != "active":
            if time.monotonic() > deadline:
                raise RuntimeError(f"{host.name}: sshd did not start")
            time.sleep(0.2)
        pub = self.key.with_suffix(".pub").read_text()
        self.exec(
            host,
            f"install -m 0600 -o {USER} -g {USER} /dev/stdin /home/{USER}/.ssh/authorized_keys",
            stdin=pub,
        )
        keys = self.exec(host, "cat /etc/ssh/ssh_host_*_key.pub")
        host.host_keys = [" ".join(line.split()[:2]) for line in keys.splitlines() if line]

    # -- faults and changes -------------------------------------------------------------
    def stop(self, name: str) -> None:
        self.client.api.stop(self.hosts[name].container, timeout=5)

    def start_host(self, name: str) -> None:
        host = self.hosts[name]
        self.client.api.start(host.container)
        self._await_ready(host)

    def recreate(self, name: str, *, trust: bool = True) -> None:
        """A rebuilt machine at the same address: new host keys. With trust, the bed's
        known_hosts learns the new keys (as an operator would after checking them)."""
        host = self.hosts[name]
        self.client.api.remove_container(host.container, force=True)
        with contextlib.suppress(docker.errors.NotFound):
            self.client.volumes.get(f"{host.container}-docker").remove(force=True)
        self._boot(name)
        if trust:
            self.write_inventory()

    def bake(self, name: str, tag: str) -> None:
        """Commits a host as an image, minus what must differ per host (host keys,
        machine id, our login key). Stops the host."""
        self.exec(
            name,
            "rm -f /etc/ssh/ssh_host_* /home/fleet/.ssh/authorized_keys; "
            ": > /etc/machine-id; systemctl stop docker docker.socket 2>/dev/null; "
            "apt-get clean; rm -rf /var/lib/apt/lists/*; true",
        )
        self.client.api.stop(self.hosts[name].container, timeout=10)
        repo, _, version = tag.partition(":")
        self.client.api.commit(
            self.hosts[name].container, repository=repo, tag=version, changes=['CMD ["/sbin/init"]']
        )

    # -- the network -------------------------------------------------------------------
    @property
    def bridge(self) -> str:
        """The bridge device of the bed's network on this machine: what this machine (the
        controller) sends to the hosts passes it; what hosts send each other does not."""
        return "br-" + str(self.network.id)[:12]

    def sent(self) -> int:
        """Bytes this machine has sent into the bed's network (the bridge's transmit count)."""
        return int(Path(f"/sys/class/net/{self.bridge}/statistics/tx_bytes").read_text())

    @contextlib.contextmanager
    def shaped(self, rate: str) -> Iterator[None]:
        """The controller's link into the bed limited to rate (tc tbf on the bridge device:
        only what this machine sends), as a laptop's link to a cloud region."""
        tc = ["tc", "qdisc", "add", "dev", self.bridge, "root", "tbf", "rate", rate]
        subprocess.run([*tc, "burst", "256kb", "latency", "200ms"], check=True)
        try:
            yield
        finally:
            subprocess.run(["tc", "qdisc", "del", "dev", self.bridge, "root"], check=False)

    # -- helpers -----------------------------------------------------------------------
    def exec(
        self, host: TestHost | str, cmd: str, *, stdin: str | None = None, check: bool = True
    ) -> str:
        """Runs a shell command in a host as root, out of band (docker exec, not SSH)."""
        h = self.hosts[host] if isinstance(host, str) else host
        proc = subprocess.run(
            ["docker", "exec", "-i", h.container, "sh", "-c", cmd],
            input=stdin,
            capture_output=True,
            text=True,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"{h.name}: {cmd!r} exited {proc.returncode}: {proc.stderr}")
        return proc.stdout

    def write_inventory(
        self,
        path: Path | None = None,
        host_vars: dict[str, dict[str, Any]] | None = None,
        **all_vars: Any,
    ) -> Path:
        lines = [f"{h.address} {k}" for h in self.hosts.values() for k in h.host_keys]
        self.known_hosts.write_text("\n".join(lines) + "\n")
        self.known_hosts.chmod(0o600)
        doc = {
            "all": {
                "vars": {
                    "ssh_user": USER,
                    "ssh_key": str(self.key),
                    "become": True,
                    "known_hosts": str(self.known_hosts),
                    "connect_timeout": 5,
                    "overlay_encrypted": kernel_has_esp(),
                    **all_vars,
                },
                "hosts": {
                    h.name: {
                        "address": h.address,
                        "roles": h.roles,
                        **(host_vars or {}).get(h.name, {}),
                    }
                    for h in sorted(self.hosts.values(), key=lambda h: h.name)
                },
            }
        }
        target = path or self.inventory
        target.write_text(yaml.safe_dump(doc, sort_keys=False))
        return target

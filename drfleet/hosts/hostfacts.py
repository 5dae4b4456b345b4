"""A host's facts, typed: one class per probe section, read through `Facts` (pyinfra-style).
The probe (drfleet/hosts/probe.py) prints plain JSON; this is the only code that knows its keys.
A section the probe could not read is empty here, and `Facts.error(section)` says why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class OsRelease:
    id: str = ""
    version: str = ""
    codename: str = ""
    pretty: str = ""


@dataclass(frozen=True)
class Gpu:
    index: str
    name: str
    memory_mb: int
    driver: str


@dataclass(frozen=True)
class Manager:
    """A swarm manager as a node knows it (docker info's RemoteManagers)."""

    node_id: str = ""
    addr: str = ""  # ip:port


@dataclass(frozen=True)
class Swarm:
    state: str = "inactive"
    node_id: str = ""
    is_manager: bool = False
    node_addr: str = ""
    cluster_id: str = ""
    managers: tuple[Manager, ...] = ()


@dataclass(frozen=True)
class Docker:
    installed: bool = False
    running: bool = False
    version: str | None = None
    error: str | None = None
    swarm: Swarm = field(default_factory=Swarm)


@dataclass(frozen=True)
class FileFact:
    exists: bool = False
    type: str = ""
    mode: str = ""
    owner: str = ""
    group: str = ""
    size: int = 0
    sha256: str = ""
    content: str | None = None
    target: str = ""
    error: str = ""


@dataclass(frozen=True)
class UnitFact:
    load: str = "not-found"
    active: str = "inactive"
    enabled: str = ""
    need_reload: str = ""


@dataclass(frozen=True)
class Account:
    exists: bool = False
    groups: tuple[str, ...] = ()
    home: str = ""


@dataclass(frozen=True)
class Network:
    id: str = ""
    driver: str | None = None
    scope: str | None = None
    attachable: bool | None = None
    encrypted: bool = False
    subnets: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IPsec:
    """Whether the kernel can carry an encrypted overlay (ESP with AES-GCM), and if not why."""

    esp: bool = False
    error: str = ""


@dataclass(frozen=True)
class Boot:
    """What holds a fresh cloud host's apt (probe.boot): cloud-init's first boot (absent,
    running, done, disabled) and the process holding apt's lock ("" when none)."""

    cloud_init: str = "absent"
    apt_lock: str = ""


@dataclass(frozen=True)
class Node:
    id: str = ""
    hostname: str = ""
    addr: str = ""
    state: str = ""
    role: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    version: int = 0


@dataclass(frozen=True)
class Address:
    dev: str
    cidr: str


@dataclass(frozen=True)
class Net:
    addresses: tuple[Address, ...] = ()
    routes: tuple[str, ...] = ()
    default_source: str = ""


def _pick(cls: type, doc: dict[str, Any]) -> Any:
    names = cls.__dataclass_fields__  # type: ignore[attr-defined]
    return cls(**{k: v for k, v in doc.items() if k in names})


def _swarm(doc: dict[str, Any]) -> Swarm:
    managers = tuple(_pick(Manager, m) for m in doc.get("managers") or [])
    swarm: Swarm = _pick(Swarm, {**doc, "managers": managers})
    return swarm


class Facts:
    """A typed view of one host's probe output; `raw` is the JSON as the probe printed it
    (what `drfleet facts --json` shows). Sections not asked for read as empty."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw

    def error(self, section: str) -> str:
        """Why the probe could not read `section`, or ""."""
        return str((self.raw.get("errors") or {}).get(section) or "")

    # base facts -----------------------------------------------------------------------------
    @property
    def os(self) -> OsRelease:
        return _pick(OsRelease, self.raw.get("os") or {})  # type: ignore[no-any-return]

    @property
    def arch(self) -> str:
        return str(self.raw.get("arch") or "")

    @property
    def python(self) -> str:
        return str(self.raw.get("python") or "0.0")

    @property
    def vcpus(self) -> int:
        return int(self.raw.get("vcpus") or 0)

    @property
    def memory_mb(self) -> int:
        return int(self.raw.get("memory_mb") or 0)

    @property
    def gpus(self) -> list[Gpu]:
        return [_pick(Gpu, g) for g in self.raw.get("gpus") or []]

    @property
    def gpu_error(self) -> str | None:
        return self.raw.get("gpu_error")

    @property
    def nvidia_pci(self) -> int:
        return int(self.raw.get("nvidia_pci") or 0)

    @property
    def login_user(self) -> str:
        return str(self.raw.get("login_user") or "")

    @property
    def user(self) -> str:
        return str(self.raw.get("user") or "")

    @property
    def disk_free_mb(self) -> int:
        """Free space where docker keeps its images."""
        return int((self.raw.get("disk") or {}).get("free_mb") or 0)

    @property
    def docker(self) -> Docker:
        d = self.raw.get("docker") or {}
        return Docker(
            installed=bool(d.get("installed")),
            running=bool(d.get("running")),
            version=d.get("version"),
            error=d.get("error"),
            swarm=_swarm(d.get("swarm") or {}),
        )

    # sections asked for by tasks --------------------------------------------------------------
    def file(self, path: str) -> FileFact:
        return _pick(FileFact, (self.raw.get("files") or {}).get(path) or {})  # type: ignore[no-any-return]

    def unit(self, name: str) -> UnitFact:
        return _pick(UnitFact, (self.raw.get("units") or {}).get(name) or {})  # type: ignore[no-any-return]

    def account(self, name: str) -> Account:
        doc = (self.raw.get("users") or {}).get(name) or {}
        return Account(bool(doc.get("exists")), tuple(doc.get("groups") or ()), doc.get("home", ""))

    @property
    def packages(self) -> dict[str, str]:
        """Installed packages and their versions."""
        return dict(self.raw.get("packages") or {})

    @property
    def apt_updated_at(self) -> float:
        return float(self.raw.get("apt_updated_at") or 0)

    @property
    def images(self) -> dict[str, str]:
        """Image tag -> id."""
        return dict(self.raw.get("images") or {})

    @property
    def networks(self) -> dict[str, Network]:
        out = {}
        for name, n in (self.raw.get("networks") or {}).items():
            doc = {**n, "subnets": tuple(n.get("subnets") or ())}
            out[name] = _pick(Network, doc)
        return out

    @property
    def ipsec(self) -> IPsec:
        ipsec: IPsec = _pick(IPsec, self.raw.get("ipsec") or {})
        return ipsec

    @property
    def boot(self) -> Boot:
        boot: Boot = _pick(Boot, self.raw.get("boot") or {})
        return boot

    @property
    def managers(self) -> dict[str, str]:
        """A swarm worker's managers, address -> "" when it answers from this host, else why
        not (probe.managers_reach); {} when not asked or not a worker."""
        return {str(k): str(v) for k, v in (self.raw.get("managers") or {}).items()}

    @property
    def nodes(self) -> list[Node]:
        return [_pick(Node, n) for n in self.raw.get("nodes") or []]

    @property
    def net(self) -> Net:
        n = self.raw.get("net") or {}
        return Net(
            tuple(Address(a["dev"], a["cidr"]) for a in n.get("addresses") or []),
            tuple(n.get("routes") or ()),
            str(n.get("default_source") or ""),
        )

    @property
    def pending(self) -> list[str]:
        """Handlers a run owed this host when it was cut short."""
        return list(self.raw.get("pending") or [])

"""The desired state a controller hands an agent, validated strictly before it is accepted.

An error names the field (`containers[2].ports`) and what is wrong, and nothing is accepted
in part: an invalid document leaves the previous state in force.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}\Z")
PORT = re.compile(r"^([0-9]{1,5})(/(tcp|udp))?\Z")
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*\Z")
RESTART = ("always", "on-failure", "never")
MAX_BYTES = 8 * 1024 * 1024


class SpecError(ValueError):
    """The desired state is not acceptable; the message says where and why."""


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    working_dir: str | None = None
    env: dict[str, str] = field(default_factory=dict, repr=False)  # values are secrets
    labels: dict[str, str] = field(default_factory=dict)
    networks: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)  # more names on its networks
    ports: dict[str, int | None] = field(default_factory=dict)
    publish_address: str = "127.0.0.1"  # the host address its ports listen on
    mounts: list[Mount] = field(default_factory=list)
    gpus: int | list[str] = 0  # a count (-1: all) or device ids
    init: bool = False
    ipc: str | None = None
    shm_size: str | None = None
    hostname: str | None = None
    restart: str = "on-failure"
    role: str = ""

    def document(self) -> dict[str, Any]:
        """The container as a desired-state document carries it: what `container` reads back
        to this spec, fields at their defaults left out (so an agent that predates a field
        still reads a spec that does not use it)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            if (f.default is MISSING and f.default_factory is MISSING) or value != default:
                out[f.name] = [asdict(m) for m in value] if f.name == "mounts" else value
        return out

    def spec_hash(self, run_id: str) -> str:
        """Changes whenever anything that shapes the container changes (the run included)."""
        doc = json.dumps({"run": run_id, "spec": asdict(self)}, sort_keys=True)
        return hashlib.sha256(doc.encode()).hexdigest()[:16]


DEFAULT_STACK = "default"  # a document that names no stack


@dataclass(frozen=True)
class DesiredState:
    """One stack's desired state: a controller's assignment to this host for one purpose
    (a run's training, its evaluation, the shared S3), replaced whole by the next document of
    the same stack and never touching the others (docker's stacks, compose's projects)."""

    fleet: str
    run_id: str
    generation: int
    containers: list[ContainerSpec]
    stack: str = DEFAULT_STACK

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    def document(self) -> dict[str, Any]:
        """The document a controller sends for this state (parse reads it back to it)."""
        return {
            "fleet": self.fleet,
            "stack": self.stack,
            "run_id": self.run_id,
            "generation": self.generation,
            "containers": [c.document() for c in self.containers],
        }

    def run_of(self, name: str) -> str:
        return self.run_id


EMPTY = DesiredState(fleet="drfleet", run_id="", generation=0, containers=[])


@dataclass(frozen=True)
class Fleetwide:
    """Everything the host is to run: every stack's containers, each with its stack's run."""

    fleet: str
    stacks: dict[str, DesiredState]

    @property
    def containers(self) -> list[ContainerSpec]:
        return [c for name in sorted(self.stacks) for c in self.stacks[name].containers]

    def stack_of(self, name: str) -> str:
        return next(
            (k for k, d in self.stacks.items() if any(c.name == name for c in d.containers)), ""
        )

    def run_of(self, name: str) -> str:
        stack = self.stack_of(name)
        return self.stacks[stack].run_id if stack else ""

    @property
    def generation(self) -> int:
        return max((d.generation for d in self.stacks.values()), default=0)


def merge(stacks: dict[str, DesiredState], fleet: str = "drfleet") -> Fleetwide:
    """The host's stacks as one state, or SpecError naming the two stacks that would clash:
    a container name or a host port may belong to one stack only, and every stack is of one
    fleet. fleet: the host's when it holds no stack (its containers are still to be
    removed: the agent only touches its own fleet's)."""
    fleets = {d.fleet for d in stacks.values()}
    if len(fleets) > 1:
        raise SpecError(f"stacks of more than one fleet ({', '.join(sorted(fleets))})")
    names: dict[str, str] = {}
    ports: dict[int, tuple[str, str]] = {}
    for stack in sorted(stacks):
        for c in stacks[stack].containers:
            if c.name in names:
                raise SpecError(
                    f"stack {stack!r}: container {c.name!r} belongs to stack {names[c.name]!r}"
                )
            names[c.name] = stack
            for hp in c.ports.values():
                if hp is None:
                    continue
                if hp in ports:
                    other, owner = ports[hp]
                    raise SpecError(
                        f"stack {stack!r}: host port {hp} of {c.name} is published by {owner} "
                        f"of stack {other!r}"
                    )
                ports[hp] = (stack, c.name)
    return Fleetwide(fleet=next(iter(fleets), fleet), stacks=dict(stacks))


def _fail(where: str, what: str) -> SpecError:
    return SpecError(f"{where}: {what}")


def _str(v: Any, where: str, *, pattern: re.Pattern[str] | None = None, empty: bool = False) -> str:
    if not isinstance(v, str) or (not v and not empty):
        raise _fail(where, f"must be a {'' if empty else 'non-empty '}string, not {v!r}")
    if "\x00" in v:
        raise _fail(where, "contains a NUL byte")
    if pattern is not None and not pattern.fullmatch(v):
        raise _fail(where, f"{v!r} is not valid")
    return v


def _str_list(v: Any, where: str) -> list[str]:
    if not isinstance(v, list):
        raise _fail(where, f"must be a list of strings, not {type(v).__name__}")
    return [_str(x, f"{where}[{i}]", empty=True) for i, x in enumerate(v)]


def _str_map(v: Any, where: str, key: re.Pattern[str] | None = None) -> dict[str, str]:
    if not isinstance(v, dict):
        raise _fail(where, f"must be an object of strings, not {type(v).__name__}")
    out = {}
    for k, x in v.items():
        _str(k, f"{where} key", pattern=key)
        if isinstance(x, bool) or not isinstance(x, str | int | float):
            raise _fail(f"{where}.{k}", f"must be a string, not {type(x).__name__}")
        out[k] = x if isinstance(x, str) else json.dumps(x)
        _str(out[k], f"{where}.{k}", empty=True)
    return out


def _ports(v: Any, where: str) -> dict[str, int | None]:
    if not isinstance(v, dict):
        raise _fail(where, 'must be an object like {"8080/tcp": 18080}')
    out: dict[str, int | None] = {}
    for k, x in v.items():
        m = PORT.fullmatch(k) if isinstance(k, str) else None
        if not m or not 1 <= int(m.group(1)) <= 65535:
            raise _fail(where, f'{k!r} is not a container port (use e.g. "8080/tcp")')
        key = k if m.group(2) else f"{k}/tcp"
        if x is not None and (isinstance(x, bool) or not isinstance(x, int) or not 1 <= x <= 65535):
            raise _fail(f"{where}.{k}", f"host port must be 1..65535 or null, not {x!r}")
        out[key] = x
    return out


def _mounts(v: Any, where: str) -> list[Mount]:
    if not isinstance(v, list):
        raise _fail(where, "must be a list of {source, target, read_only}")
    out = []
    for i, m in enumerate(v):
        w = f"{where}[{i}]"
        if not isinstance(m, dict):
            raise _fail(w, "must be an object {source, target, read_only}")
        _unknown(m, {"source", "target", "read_only"}, w)
        src = _str(m.get("source"), f"{w}.source")
        dst = _str(m.get("target"), f"{w}.target")
        if not src.startswith("/") or not dst.startswith("/"):
            raise _fail(w, "source and target must be absolute paths")
        ro = m.get("read_only", False)
        if not isinstance(ro, bool):
            raise _fail(f"{w}.read_only", "must be true or false")
        out.append(Mount(src, dst, ro))
    return out


def _gpus(v: Any, where: str) -> int | list[str]:
    if isinstance(v, bool):
        raise _fail(where, "must be a count (-1 for all) or a list of device ids")
    if isinstance(v, int):
        if v < -1:
            raise _fail(where, "must be -1 (all), 0 (none) or a positive count")
        return v
    return _str_list(v, where)


def _address(v: Any, where: str) -> str:
    try:
        return str(ipaddress.ip_address(v if isinstance(v, str) else ""))
    except ValueError:
        raise _fail(where, f"must be an IP address (127.0.0.1, 0.0.0.0), not {v!r}") from None


def _unknown(obj: dict[str, Any], known: set[str], where: str) -> None:
    extra = sorted(set(obj) - known)
    if extra:
        raise _fail(where, f"unknown field {extra[0]!r} (known: {', '.join(sorted(known))})")


_FIELDS = {f for f in ContainerSpec.__dataclass_fields__}


def container(obj: Any, where: str) -> ContainerSpec:
    if not isinstance(obj, dict):
        raise _fail(where, "must be an object")
    _unknown(obj, _FIELDS, where)
    if "image" not in obj:
        raise _fail(where, "missing field 'image'")
    name = _str(obj.get("name"), f"{where}.name", pattern=NAME)
    kw: dict[str, Any] = {"name": name, "image": _str(obj["image"], f"{where}.image")}
    w = f"{where}({name})"
    for key in ("command", "entrypoint"):
        if obj.get(key) is not None:
            kw[key] = _str_list(obj[key], f"{w}.{key}")
    for key in ("working_dir", "ipc", "hostname", "role"):
        if obj.get(key) is not None:
            kw[key] = _str(obj[key], f"{w}.{key}", empty=key == "role")
    if obj.get("shm_size") is not None:
        kw["shm_size"] = str(obj["shm_size"])
    if "env" in obj:
        kw["env"] = _str_map(obj["env"], f"{w}.env", ENV_KEY)
    if "labels" in obj:
        kw["labels"] = _str_map(obj["labels"], f"{w}.labels")
        if any(k.startswith("drfleet.") for k in kw["labels"]):
            raise _fail(f"{w}.labels", "labels starting with 'drfleet.' are the agent's own")
    if "networks" in obj:
        kw["networks"] = [
            _str(n, f"{w}.networks[{i}]", pattern=NAME)
            for i, n in enumerate(_str_list(obj["networks"], f"{w}.networks"))
        ]
    if "aliases" in obj:
        kw["aliases"] = [
            _str(a, f"{w}.aliases[{i}]", pattern=NAME)
            for i, a in enumerate(_str_list(obj["aliases"], f"{w}.aliases"))
        ]
    if "ports" in obj:
        kw["ports"] = _ports(obj["ports"], f"{w}.ports")
    if "publish_address" in obj:
        kw["publish_address"] = _address(obj["publish_address"], f"{w}.publish_address")
    if "mounts" in obj:
        kw["mounts"] = _mounts(obj["mounts"], f"{w}.mounts")
    if "gpus" in obj:
        kw["gpus"] = _gpus(obj["gpus"], f"{w}.gpus")
    if "init" in obj:
        if not isinstance(obj["init"], bool):
            raise _fail(f"{w}.init", "must be true or false")
        kw["init"] = obj["init"]
    if "restart" in obj:
        if obj["restart"] not in RESTART:
            raise _fail(f"{w}.restart", f"must be one of {', '.join(RESTART)}")
        kw["restart"] = obj["restart"]
    return ContainerSpec(**kw)


def parse(text: str | bytes) -> DesiredState:
    """Parses and validates a desired-state document, or raises SpecError."""
    if len(text) > MAX_BYTES:
        raise SpecError(f"desired state is {len(text)} bytes; the limit is {MAX_BYTES}")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError(f"desired state is not UTF-8 (byte {exc.start})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(doc, dict):
        raise SpecError("desired state must be a JSON object")
    _unknown(doc, {"fleet", "stack", "run_id", "generation", "containers"}, "desired state")
    fleet = _str(doc.get("fleet", "drfleet"), "fleet", pattern=NAME)
    stack = _str(doc.get("stack", DEFAULT_STACK), "stack", pattern=NAME)
    run_id = _str(str(doc.get("run_id", "")), "run_id", empty=True)
    gen = doc.get("generation", 0)
    if isinstance(gen, bool) or not isinstance(gen, int) or gen < 0:
        raise SpecError(f"generation: must be a whole number >= 0, not {gen!r}")
    items = doc.get("containers", [])
    if not isinstance(items, list):
        raise SpecError("containers: must be a list")
    specs = [container(c, f"containers[{i}]") for i, c in enumerate(items)]
    seen: dict[str, int] = {}
    for i, s in enumerate(specs):
        if s.name in seen:
            raise SpecError(
                f"containers[{i}].name: duplicate name {s.name!r} (also containers[{seen[s.name]}])"
            )
        seen[s.name] = i
    host_ports: dict[int, str] = {}
    for s in specs:
        for hp in s.ports.values():
            if hp is not None:
                if hp in host_ports:
                    raise SpecError(
                        f"containers({s.name}).ports: host port {hp} is also "
                        f"published by {host_ports[hp]}"
                    )
                host_ports[hp] = s.name
    return DesiredState(fleet=fleet, run_id=run_id, generation=gen, containers=specs, stack=stack)


def split_legacy(state: DesiredState) -> dict[str, DesiredState]:
    """The one desired state of an agent before stacks (drfleet <= 0.8) as the stacks the
    controller now sends: minio alone ("s3"), the evaluation ("deepracer-eval-<run>") and the
    rest, the run's training ("deepracer-<run>"). Names and specs are kept, so nothing that
    runs is recreated."""
    run = state.run_id or "0"

    def stack_of(c: ContainerSpec) -> str:
        if c.role == "minio":
            return "s3"
        return f"deepracer-eval-{run}" if c.role == "evaluation" else f"deepracer-{run}"

    out: dict[str, DesiredState] = {}
    for c in state.containers:
        name = stack_of(c)
        have = out.get(name)
        out[name] = DesiredState(
            state.fleet,
            state.run_id,
            state.generation,
            [*(have.containers if have else []), c],
            name,
        )
    return out


def from_dict(doc: dict[str, Any]) -> DesiredState:
    return parse(json.dumps(doc))

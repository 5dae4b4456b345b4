"""The inventory: hosts, groups and vars in Ansible-like YAML, validated up front.

Precedence of settings and vars: `all` < group (shallower first, then by name) < host.
Every error names the file and line and says what to write instead.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drfleet import yamlsrc
from drfleet.errors import ConfigError, did_you_mean, lead_in, paren
from drfleet.hosts import ansible_inventory
from drfleet.hosts.instance_types import SHAPES, Shape
from drfleet.yamlsrc import Located

ROLES = ("trainer", "robomaker")
CONNECTIONS = ("ssh", "local")
DEFAULT_INVENTORY = Path("inventory/local.yml")
_EMBEDDED_DEFAULT = Path(__file__).parents[1] / "data" / "local.yml"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
_ADDRESS = re.compile(r"^[A-Za-z0-9_.:%-]{1,253}\Z")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}\Z")
_JUMP = re.compile(
    r"^(?:(?P<user>[A-Za-z_][A-Za-z0-9_.-]{0,31})@)?(?P<host>[A-Za-z0-9_.%-]{1,253}|\[[0-9A-Fa-f:.%]+\])(?::(?P<port>[0-9]{1,5}))?\Z"
)


def _str(pattern: re.Pattern[str] | None, what: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, str) or not value:
            raise ValueError(f"must be a non-empty string ({what})")
        if pattern is not None and not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid {what}")
        return value

    return check


def _int(lo: int, hi: int) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be a whole number from {lo} to {hi}, not {value!r}")
        if not lo <= value <= hi:
            raise ValueError(f"{value} is out of range ({lo} to {hi})")
        return value

    return check


def _bool(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {value!r}")
    return value


def _choice(choices: tuple[str, ...]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of: {', '.join(choices)}")
        return value

    return check


def _roles(value: Any) -> Any:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
        raise ValueError("must be a list of roles, e.g. [trainer, robomaker]")
    for role in value:
        if role not in ROLES:
            hint = paren(did_you_mean(role, ROLES))
            raise ValueError(f"unknown role {role!r}{hint}; roles are: {', '.join(ROLES)}")
    return tuple(dict.fromkeys(value))


def _instance_type(value: Any) -> Any:
    if not isinstance(value, str) or value not in SHAPES:
        raise ValueError(
            f"unknown instance_type {value!r}{paren(did_you_mean(str(value), SHAPES))}; "
            f"known: {', '.join(SHAPES)}; "
            "for another shape set vcpus and memory_mb instead"
        )
    return value


def _ip(value: Any) -> Any:
    try:
        return str(ipaddress.ip_address(value if isinstance(value, str) else ""))
    except ValueError:
        raise ValueError(
            f"must be an IP address of the host (127.0.0.1, or 0.0.0.0 for all), not {value!r}"
        ) from None


def _path(value: Any) -> Any:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ValueError("must be a file path")
    return value


# Every per-host setting, its check, and its default. Any of them may also be set in vars.
SETTINGS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "address": (_str(_ADDRESS, "host name or IP address"), None),
    "connection": (_choice(CONNECTIONS), "ssh"),
    "ssh_user": (_str(_USER, "user name"), None),
    "ssh_port": (_int(1, 65535), 22),
    "ssh_key": (_path, None),
    "proxy_jump": (_str(_JUMP, "jump host ([user@]host[:port])"), None),
    "known_hosts": (_path, None),
    "connect_timeout": (_int(1, 600), 10),
    "become": (_bool, False),
    "become_password_env": (_str(_ENV_NAME, "environment variable name"), None),
    "roles": (_roles, ()),
    "instance_type": (_instance_type, None),
    "vcpus": (_int(1, 4096), None),
    "memory_mb": (_int(256, 64 * 1024 * 1024), None),
    "gpus": (_int(0, 64), None),
    "opengl": (_bool, False),
    "publish_address": (_ip, "127.0.0.1"),
}
_GROUP_KEYS = ("hosts", "vars", "children")
_HOST_KEYS = (*SETTINGS, "vars")


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    connection: str = "ssh"
    ssh_user: str | None = None
    ssh_port: int = 22
    ssh_key: str | None = None
    proxy_jump: str | None = None
    known_hosts: str | None = None
    connect_timeout: int = 10
    become: bool = False
    become_password_env: str | None = None  # names the variable; the password is never here
    roles: tuple[str, ...] = ()
    instance_type: str | None = None
    vcpus: int | None = None
    memory_mb: int | None = None
    gpus: int | None = None
    opengl: bool = False
    publish_address: str = "127.0.0.1"  # where minio, video and VNC ports listen on the host
    groups: tuple[str, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=dict, compare=False)
    source: str = ""

    @property
    def is_local(self) -> bool:
        return self.connection == "local"

    @property
    def shape(self) -> Shape | None:
        return SHAPES.get(self.instance_type) if self.instance_type else None

    def declared(self, what: str) -> int | None:
        """vcpus, memory_mb or gpus as the inventory declares them (explicit > instance_type)."""
        explicit = getattr(self, what)
        if explicit is not None:
            return int(explicit)
        shape = self.shape
        return int(getattr(shape, what)) if shape else None


@dataclass(frozen=True)
class Inventory:
    path: str
    hosts: dict[str, Host]
    groups: dict[str, tuple[str, ...]]

    def select(self, hosts: Iterable[str] = (), groups: Iterable[str] = ()) -> list[Host]:
        """Hosts named by --limit/--host and --group, as Ansible's -l reads them: names, groups
        (also `trainer`, `robomaker`), glob patterns ('w*'), `!x` to leave x out; comma-
        separated or repeated. None means all. A word that matches nothing is an error."""
        words = [n.strip() for h in hosts for n in h.split(",") if n.strip()]
        group_names = [g.strip() for grp in groups for g in grp.split(",") if g.strip()]
        if not words and not group_names:
            return list(self.hosts.values())
        chosen: dict[str, Host] = {}
        dropped: set[str] = set()
        for word in words:
            if word.startswith("!"):
                dropped.update(self._match(word[1:]))
            else:
                chosen.update({n: self.hosts[n] for n in self._match(word)})
        for group in group_names:
            if group not in self.groups:
                raise ConfigError(
                    f"--group {group}: no such group in the inventory",
                    where=self.path,
                    fix=_known("groups", group, self.groups),
                )
            for name in self.groups[group]:
                chosen[name] = self.hosts[name]
        if not chosen and dropped:  # only exclusions: all but those
            chosen = dict(self.hosts)
        return [h for h in self.hosts.values() if h.name in chosen and h.name not in dropped]

    def _match(self, word: str) -> list[str]:
        if word in self.hosts:
            return [word]
        if word in self.groups:
            return list(self.groups[word])
        found = [n for n in self.hosts if fnmatch.fnmatchcase(n, word)]
        if not found:
            raise ConfigError(
                f"{word}: no host or group of the inventory is or matches it",
                where=self.path,
                fix=_known("hosts", word, self.hosts),
            )
        return found

    @property
    def trainer(self) -> Host | None:
        return next((h for h in self.hosts.values() if "trainer" in h.roles), None)


def _known(kind: str, name: str, known: Iterable[str]) -> str:
    known = list(known)
    return lead_in(did_you_mean(name, known)) + f"known {kind}: {', '.join(known) or '(none)'}"


def default_path(env_dir: str | Path | None = None) -> Path:
    """DRFLEET_INVENTORY, else inventory/local.yml in the env dir (where `drfleet init`
    writes it), else here, else the embedded one-host default."""
    env = os.environ.get("DRFLEET_INVENTORY")
    if env:
        return Path(env)
    for base in (Path(env_dir),) if env_dir else ():
        if (base / DEFAULT_INVENTORY).exists():
            return base / DEFAULT_INVENTORY
    if DEFAULT_INVENTORY.exists():
        return DEFAULT_INVENTORY
    return _EMBEDDED_DEFAULT


def is_embedded(path: Path) -> bool:
    return path == _EMBEDDED_DEFAULT


def load(path: str | Path | None = None, env_dir: str | Path | None = None) -> Inventory:
    """A YAML inventory, or an Ansible INI one (by its .ini suffix, or a first line `[...]`);
    without a path, default_path(env_dir)'s."""
    p = Path(path) if path else default_path(env_dir)
    text = yamlsrc.read_text(p)
    if ansible_inventory.looks_like_ini(text, str(p)):
        return parse(ansible_inventory.from_ini(text, str(p), SETTINGS), str(p))
    return parse(yamlsrc.load_text(text, str(p)), str(p))


@dataclass
class _Walk:
    file: str
    host_defs: dict[str, tuple[Located, int]] = field(default_factory=dict)
    host_groups: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    group_vars: dict[str, Located] = field(default_factory=dict)
    group_depth: dict[str, int] = field(default_factory=dict)
    group_members: dict[str, list[str]] = field(default_factory=dict)

    def err(self, line: int, what: str, fix: str | None = None) -> ConfigError:
        return ConfigError(what, where=f"{self.file}:{line}", fix=fix)


def parse(data: Any, file: str) -> Inventory:
    """Turns loaded YAML into an Inventory, or raises ConfigError naming file and line."""
    if not isinstance(data, Located) or set(data) != {"all"}:
        line = data.line if isinstance(data, Located) else 1
        extra = [k for k in data if k != "all"] if isinstance(data, Located) else []
        what = (
            f"unexpected top-level key {extra[0]!r}"
            if extra
            else "an inventory is a mapping with one key, `all`"
        )
        raise ConfigError(
            what,
            where=f"{file}:{line}",
            fix="start the file with `all:` and put hosts, vars and children under it",
        )
    w = _Walk(file)
    _walk_group(w, "all", data["all"], data.line_of("all"), depth=0)
    if not w.host_defs:
        raise w.err(
            data.line_of("all"),
            "the inventory has no hosts",
            fix="add at least one host under all.hosts",
        )
    hosts = {name: _build_host(w, name) for name in w.host_defs}
    trainers = [h.name for h in hosts.values() if "trainer" in h.roles]
    if len(trainers) > 1:
        first = w.host_defs[trainers[1]][1]
        raise w.err(
            first,
            f"more than one host has the trainer role: {', '.join(trainers)}",
            fix="give the trainer role to exactly one host",
        )
    groups: dict[str, tuple[str, ...]] = {}
    for role in ROLES:  # implicit groups by role, unless the user defined one by that name
        groups[role] = tuple(h.name for h in hosts.values() if role in h.roles)
    for group, members in w.group_members.items():
        groups[group] = tuple(dict.fromkeys(members))
    groups["all"] = tuple(hosts)
    return Inventory(path=file, hosts=hosts, groups=groups)


def _walk_group(w: _Walk, name: str, node: Any, line: int, depth: int) -> None:
    if node is None:
        node = Located()
        node.line = line
    if not isinstance(node, Located):
        raise w.err(line, f"group {name!r} must be a mapping with hosts, vars or children")
    for key in node:
        if key not in _GROUP_KEYS:
            raise w.err(
                node.line_of(key),
                f"unknown key {key!r} in group {name!r}",
                fix=_suggest(key, _GROUP_KEYS, "a group may have"),
            )
    if name in w.group_depth:
        raise w.err(line, f"group {name!r} is defined twice", fix="define each group once")
    w.group_depth[name] = depth
    w.group_members.setdefault(name, [])
    gvars = node.get("vars") or Located()
    if not isinstance(gvars, Located):
        raise w.err(node.line_of("vars"), f"vars of group {name!r} must be a mapping")
    _check_vars(w, gvars, f"group {name!r} vars")
    w.group_vars[name] = gvars
    hosts = node.get("hosts") or Located()
    if not isinstance(hosts, Located):
        raise w.err(
            node.line_of("hosts"),
            f"hosts of group {name!r} must be a mapping of host names",
            fix="write `hosts:` then one `name: {address: ...}` per line",
        )
    for host, spec in hosts.items():
        hline = hosts.line_of(host)
        if not _NAME.fullmatch(host):
            raise w.err(
                hline,
                f"host name {host!r} is not valid",
                fix="use letters, digits, '.', '-' and '_' (start with a letter or digit)",
            )
        if spec is not None:
            if not isinstance(spec, Located):
                raise w.err(
                    hline, f"host {host!r} must map to its settings, e.g. {{address: 10.0.0.5}}"
                )
            if host in w.host_defs:
                raise w.err(
                    hline,
                    f"duplicate host {host!r}: already defined at line {w.host_defs[host][1]}",
                    fix=f"define its settings once; in other groups list it as `{host}:` alone",
                )
            _check_host_keys(w, host, spec)
            w.host_defs[host] = (spec, hline)
        elif host not in w.host_defs:
            w.host_defs[host] = (Located(), hline)
        w.host_groups.setdefault(host, []).append((depth, name))
        w.group_members[name].append(host)
    children = node.get("children") or Located()
    if not isinstance(children, Located):
        raise w.err(
            node.line_of("children"), f"children of group {name!r} must be a mapping of groups"
        )
    for child, child_node in children.items():
        if child == "all" or not _NAME.fullmatch(child):
            raise w.err(children.line_of(child), f"{child!r} is not a valid group name")
        _walk_group(w, child, child_node, children.line_of(child), depth + 1)
        w.group_members[name].extend(w.group_members[child])


def _suggest(key: str, known: Iterable[str], lead: str) -> str:
    known = list(known)
    return lead_in(did_you_mean(key, known)) + f"{lead}: {', '.join(known)}"


def _check_host_keys(w: _Walk, host: str, spec: Located) -> None:
    _no_passwords(w, spec, f"host {host!r}")
    ansible_inventory.translate(spec, w.file)
    others = [k for k in spec if k.startswith("ansible_")]  # Ansible's own: kept as vars
    if others:
        hvars = spec.get("vars")
        if hvars is None:
            hvars = spec["vars"] = Located()
            hvars.line = spec.line
        if isinstance(hvars, Located):
            for k in others:
                hvars[k] = spec.pop(k)
    for key in spec:
        if key not in _HOST_KEYS:
            raise w.err(
                spec.line_of(key),
                f"unknown key {key!r} for host {host!r}",
                fix=_suggest(key, _HOST_KEYS, "host settings are")
                + "; put your own variables under `vars:`",
            )
        if key != "vars":
            _check_setting(w, spec, key)
    hvars = spec.get("vars")
    if hvars is not None:
        if not isinstance(hvars, Located):
            raise w.err(spec.line_of("vars"), f"vars of host {host!r} must be a mapping")
        _check_vars(w, hvars, f"host {host!r} vars")


PASSWORD_KEYS = frozenset(
    {"become_password", "become_pass", "ansible_become_password", "ansible_become_pass"}
    | {"ansible_password", "ansible_ssh_pass", "ansible_ssh_password"}
    | {"sudo_password", "sudo_pass", "password", "ssh_password"}
)


def _no_passwords(w: _Walk, values: Located, what: str) -> None:
    for key in values:
        if key in PASSWORD_KEYS:
            raise w.err(
                values.line_of(key),
                f"{key} in {what}: passwords do not belong in an inventory file",
                fix="export the sudo password in DRFLEET_BECOME_PASSWORD (or a variable you "
                "name with `become_password_env:`), and use SSH keys to log in",
            )


def _check_vars(w: _Walk, values: Located, what: str) -> None:
    _no_passwords(w, values, what)
    ansible_inventory.translate(values, w.file)
    for key in values:
        if key in SETTINGS:
            _check_setting(w, values, key)
            continue
        hint = did_you_mean(key, SETTINGS, cutoff=0.85)
        if hint:
            raise w.err(values.line_of(key), f"unknown key {key!r} in {what}", fix=hint)


def _check_setting(w: _Walk, values: Located, key: str) -> None:
    check, _default = SETTINGS[key]
    try:
        check(values[key])
    except ValueError as exc:
        raise w.err(values.line_of(key), f"{key}: {exc}") from None


def _build_host(w: _Walk, name: str) -> Host:
    spec, line = w.host_defs[name]
    memberships = sorted(set(w.host_groups.get(name, [])))
    merged: dict[str, Any] = dict(w.group_vars["all"])
    for _depth, group in memberships:
        if group != "all":
            merged.update(w.group_vars[group])
    merged.update(spec.get("vars") or {})
    merged.update({k: v for k, v in spec.items() if k != "vars"})
    settings: dict[str, Any] = {}
    for key, (check, default) in SETTINGS.items():
        settings[key] = check(merged[key]) if key in merged else default
    if "roles" not in merged:  # a host listed in a group named after a role has that role
        settings["roles"] = tuple(r for r in ROLES if name in w.group_members.get(r, []))
    if settings["address"] is None:
        settings["address"] = "localhost" if settings["connection"] == "local" else name
    if settings["address"] in ("localhost", "127.0.0.1", "::1") and "connection" not in merged:
        pass  # an SSH connection to localhost is legitimate; only `connection: local` skips SSH
    vars_ = {k: v for k, v in merged.items() if k not in SETTINGS}
    groups = tuple(g for _d, g in memberships if g != "all")
    return Host(name=name, groups=groups, vars=vars_, source=f"{w.file}:{line}", **settings)

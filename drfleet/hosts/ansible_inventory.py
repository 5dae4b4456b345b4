"""Inventories written for Ansible: its connection variables read as drfleet's settings, and
its INI format read into the same structure as a YAML inventory (with line numbers).

ansible_host, ansible_user, ansible_port, ansible_ssh_private_key_file, ansible_become,
ansible_connection and a ProxyJump in ansible_ssh_common_args map onto drfleet's settings; a
mapping that sets one setting under both names is an error naming both. Other ansible_*
variables are kept as plain vars (drfleet does not use them).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import Any

import yaml

from drfleet.errors import ConfigError, did_you_mean
from drfleet.yamlsrc import Located

ANSIBLE = {
    "ansible_host": "address",
    "ansible_ssh_host": "address",
    "ansible_user": "ssh_user",
    "ansible_ssh_user": "ssh_user",
    "ansible_port": "ssh_port",
    "ansible_ssh_port": "ssh_port",
    "ansible_ssh_private_key_file": "ssh_key",
    "ansible_become": "become",
    "ansible_connection": "connection",
    "ansible_ssh_common_args": "proxy_jump",
}
_TRUE = ("yes", "true", "on", "1")
_FALSE = ("no", "false", "off", "0")


def translate(values: Located, file: str) -> None:
    """Rewrites Ansible's names in one mapping (a host's settings or a vars block) in place.
    An ansible_* name a letter or two away from one drfleet reads (`ansible_hots`) is a typo,
    not a variable of Ansible's: refused with the name it meant."""
    for key in [k for k in values if isinstance(k, str) and k.startswith("ansible_")]:
        if key in ANSIBLE:
            continue
        hint = did_you_mean(key, ANSIBLE, cutoff=0.85)
        if hint:
            raise ConfigError(
                f"unknown Ansible variable {key!r}", where=f"{file}:{values.line_of(key)}", fix=hint
            )
    for key in [k for k in values if k in ANSIBLE]:
        ours = ANSIBLE[key]
        line = values.line_of(key)
        where = f"{file}:{line}"
        if ours in values:
            raise ConfigError(
                f"{key} and {ours} (line {values.line_of(ours)}) both set {ours}",
                where=where,
                fix="keep one of them",
            )
        value = _convert(key, values.pop(key), where)
        values[ours] = value
        values.key_lines[ours] = line


def _convert(key: str, value: Any, where: str) -> Any:
    if (
        key in ("ansible_port", "ansible_ssh_port")
        and isinstance(value, str)
        and value.isascii()
        and value.isdigit()
    ):
        return int(value)
    if key == "ansible_become" and isinstance(value, str):
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
    if key == "ansible_connection":
        if value in ("ssh", "smart", "paramiko"):
            return "ssh"
        if value == "local":
            return "local"
        raise ConfigError(
            f"ansible_connection: {value!r} is not something drfleet can use",
            where=where,
            fix="use ssh or local",
        )
    if key == "ansible_ssh_common_args":
        return _jump(str(value), where)
    return value


def _jump(args: str, where: str) -> str:
    """`-o ProxyJump=X`, `-oProxyJump=X` or `-J X`: the one SSH option drfleet takes here."""
    words = shlex.split(args)
    jump = ""
    i = 0
    while i < len(words):
        w = words[i]
        if w in ("-J", "-o") and i + 1 < len(words):
            w, i = w + words[i + 1], i + 1
        if w.startswith("-J"):
            jump = w[2:]
        elif w.lower().startswith("-oproxyjump="):
            jump = w.split("=", 1)[1]
        else:
            raise ConfigError(
                f"ansible_ssh_common_args: drfleet takes only a ProxyJump here, not {w!r}",
                where=where,
                fix="keep `-o ProxyJump=[user@]host[:port]` alone (drfleet verifies every "
                "hop's host key itself; other SSH options belong in ~/.ssh/config)",
            )
        i += 1
    if not jump:
        raise ConfigError("ansible_ssh_common_args has no ProxyJump", where=where)
    return jump


def looks_like_ini(text: str, name: str) -> bool:
    if name.endswith((".ini", ".cfg")):
        return True
    if name.endswith((".yml", ".yaml", ".json")):
        return False
    for line in text.splitlines():
        s = line.strip()
        if s and not s.startswith(("#", ";")):
            return s.startswith("[")
    return False


def _located(line: int) -> Located:
    out = Located()
    out.line = line
    return out


def _value(raw: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        return raw


def from_ini(text: str, file: str, settings: Iterable[str]) -> Located:
    """An Ansible INI inventory as the YAML structure `all: {hosts, vars, children}`;
    a host's key=value words that are not settings become its vars."""
    settings = set(settings)
    hosts: dict[str, tuple[int, Located]] = {}  # first line and merged vars of each host
    members: dict[str, list[str]] = {"ungrouped": []}
    gvars: dict[str, Located] = {}
    kids: dict[str, list[str]] = {}
    lines: dict[str, int] = {}
    section, kind = "ungrouped", "hosts"
    for n, raw in enumerate(text.splitlines(), 1):
        s = raw.strip()
        if not s or s.startswith(("#", ";")):
            continue
        if s.startswith("["):
            if not s.endswith("]"):
                raise ConfigError("a section header ends with ]", where=f"{file}:{n}")
            section, _, kind = s[1:-1].partition(":")
            kind = kind or "hosts"
            if kind not in ("hosts", "vars", "children"):
                raise ConfigError(
                    f"[{s[1:-1]}]: unknown section kind {kind!r}",
                    where=f"{file}:{n}",
                    fix="use [group], [group:vars] or [group:children]",
                )
            lines.setdefault(section, n)
            members.setdefault(section, [])
            continue
        try:
            words = shlex.split(s, comments=True)
        except ValueError as exc:
            raise ConfigError(f"cannot read this line: {exc}", where=f"{file}:{n}") from None
        if kind == "vars":
            key, eq, val = s.partition("=")
            if not eq:
                raise ConfigError("a vars line is key=value", where=f"{file}:{n}")
            block = gvars.setdefault(section, _located(n))
            block[key.strip()] = _value(val.strip())
            block.key_lines[key.strip()] = n
        elif kind == "children":
            kids.setdefault(section, []).append(words[0])
        else:
            name = words[0]
            if "[" in name:
                raise ConfigError(
                    f"host ranges like {name!r} are not supported",
                    where=f"{file}:{n}",
                    fix="list each host on its own line",
                )
            _, hv = hosts.setdefault(name, (n, _located(n)))
            for w in words[1:]:
                key, eq, val = w.partition("=")
                if not eq:
                    raise ConfigError(f"{w!r}: host variables are key=value", where=f"{file}:{n}")
                value = _value(val)
                if key == "roles" and isinstance(value, str):
                    value = [r.strip() for r in value.split(",") if r.strip()]
                target = hv
                if key not in settings and key not in ANSIBLE and key != "vars":
                    target = hv.setdefault("vars", _located(n))  # the user's own variables
                target[key] = value
                target.key_lines[key] = n
            if name not in members[section]:
                members[section].append(name)
    return _tree(file, hosts, members, gvars, kids, lines)


def _tree(
    file: str,
    hosts: dict[str, tuple[int, Located]],
    members: dict[str, list[str]],
    gvars: dict[str, Located],
    kids: dict[str, list[str]],
    lines: dict[str, int],
) -> Located:
    parent: dict[str, str] = {}
    for group, children in kids.items():
        if group == "all":
            continue  # [all:children]: top-level groups
        for child in children:
            if child in parent and parent[child] != group:
                raise ConfigError(
                    f"group {child!r} is a child of both {parent[child]!r} and {group!r}",
                    where=f"{file}:{lines.get(group, 1)}",
                    fix="give each group one parent",
                )
            parent[child] = group
    defined: set[str] = set()

    def group_node(name: str, line: int) -> Located:
        node = _located(line)
        hnode = _located(line)
        for h in members.get(name, []):
            hline, hv = hosts[h]
            if h in defined:
                hnode[h] = None
            else:
                defined.add(h)
                hnode[h] = hv
            hnode.key_lines[h] = hline
        if hnode:
            node["hosts"] = hnode
        if name in gvars:
            node["vars"] = gvars[name]
        cnode = _located(line)
        for child in kids.get(name, []):
            cnode[child] = group_node(child, lines.get(child, line))
            cnode.key_lines[child] = lines.get(child, line)
        if cnode:
            node["children"] = cnode
        return node

    top = group_node("ungrouped", 1)
    groups: Located = top.get("children") or _located(1)
    for group in members:
        if group in ("ungrouped", "all") or group in parent:
            continue
        groups[group] = group_node(group, lines.get(group, 1))
        groups.key_lines[group] = lines.get(group, 1)
    if groups:
        top["children"] = groups
    if "all" in gvars:
        top["vars"] = gvars["all"]
    root = _located(1)
    root["all"] = top
    root.key_lines["all"] = 1
    return root

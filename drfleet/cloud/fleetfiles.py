"""The files `drfleet up` writes for the other commands: the inventory of the fleet's hosts
(Ubuntu's `ubuntu` user with sudo, the fleet's SSH key, the instance types) and the
known_hosts file holding the host keys the instances were given at launch. Rendering is
pure; writing is whole-file-then-rename (localfs.atomic_write)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from drfleet.cloud import fleet, hostkey
from drfleet.cloud.fleet import FleetSpec, Instance
from drfleet.errors import DrfleetError
from drfleet.hosts.instance_types import SHAPES
from drfleet.localfs import atomic_write

MARK = "# Written by `drfleet up`"


def address(i: Instance, private: bool) -> str | None:
    return i.private_ip if private else (i.public_ip or None)


def inventory_text(
    spec: FleetSpec,
    running: list[Instance],
    vcpus: dict[str, int],
    key_file: str,
    known_hosts: str,
    private: bool,
    kept: dict[str, Any] | None = None,
) -> str:
    """kept: vars the user added under all.vars of an earlier one (kept_vars)."""
    hosts: dict[str, Any] = {}
    roles = {h.name: h.roles for h in spec.hosts()}
    for i in sorted(running, key=lambda i: (i.host != f"{spec.name}-trainer", i.host)):
        if i.host not in roles:
            continue
        entry: dict[str, Any] = {"address": address(i, private), "roles": list(roles[i.host])}
        if i.instance_type in SHAPES:
            entry["instance_type"] = i.instance_type
        elif i.instance_type in vcpus:
            entry["vcpus"] = vcpus[i.instance_type]
        entry["vars"] = {
            "ec2_instance_id": i.id,
            "ec2_market": "spot" if i.spot else "on-demand",
            "ec2_zone": i.zone,
        }
        hosts[i.host] = entry
    doc = {
        "all": {
            "vars": {
                "ssh_user": fleet.SSH_USER,
                "become": True,
                "ssh_key": key_file,
                "known_hosts": known_hosts,
                "drfleet_fleet": spec.document() | {"private_addresses": private},
            }
            | (kept or {}),
            "hosts": hosts,
        }
    }
    head = (
        f"{MARK} for fleet {spec.name} in {spec.region}: it rewrites this file on every run,\n"
        "# keeping the vars you add under all.vars. `drfleet down` ends the fleet.\n"
    )
    return head + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100)


def saved_spec(path: Path) -> dict[str, Any] | None:
    """The spec a previous `up` kept in the inventory it wrote; None when the file is absent
    or not `up`'s."""
    if not path.is_file():
        return None
    text = path.read_text()
    if not text.startswith(MARK):
        return None
    data = yaml.safe_load(text) or {}
    saved = ((data.get("all") or {}).get("vars") or {}).get("drfleet_fleet")
    return dict(saved) if isinstance(saved, dict) else None


OWN_VARS = ("ssh_user", "become", "ssh_key", "known_hosts", "drfleet_fleet")


def kept_vars(path: Path) -> dict[str, Any]:
    """The vars a user added under all.vars of the inventory `up` wrote (overlay_encrypted,
    docker_group, ...): a re-run keeps them."""
    if saved_spec(path) is not None:
        data = yaml.safe_load(path.read_text()) or {}
        have = (data.get("all") or {}).get("vars") or {}
        return {k: v for k, v in have.items() if k not in OWN_VARS}
    return {}


def claim(path: Path, embedded_default: str) -> str | None:
    """Whether `up` may write the inventory at path: yes when it is absent or `up`'s own; a
    copy of the one-host default that `drfleet init` writes is kept as .bak (said); anything
    else the user wrote is refused, never overwritten."""
    if not path.exists():
        return None
    text = path.read_text()
    if text.startswith(MARK):
        return None
    if text.strip() == embedded_default.strip():
        backup = path.with_name(path.name + ".bak")
        atomic_write(backup, text)
        return f"kept the one-host inventory {path} as {backup}"
    raise DrfleetError(
        f"{path} is an inventory of your own; `drfleet up` writes one of its own",
        fix=f"pass --inventory with another file (e.g. {path.with_name('aws.yml')}), and the "
        "same --inventory (or DRFLEET_INVENTORY) to the other commands",
    )


def write(
    path: Path,
    text: str,
    known_hosts: Path,
    keys: dict[str, str],
) -> None:
    """The known_hosts file first (the inventory names it), then the inventory."""
    atomic_write(known_hosts, "\n".join(hostkey.known_hosts_lines(keys)) + "\n", mode=0o600)
    atomic_write(path, text, mode=0o644)


def ssh_key(path: Path) -> str:
    """The public half of the fleet's SSH key: path.pub, made (ed25519, 0600) when the key
    does not exist yet."""
    pub = path.with_name(path.name + ".pub")
    if path.exists():
        if not pub.exists():
            raise DrfleetError(
                f"{path} has no {pub.name} beside it",
                fix=f"ssh-keygen -y -f {path} > {pub}",
            )
        return pub.read_text().strip()
    private, public = hostkey.generate("drfleet")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(path, private, mode=0o600)
    atomic_write(pub, public + "\n", mode=0o644)
    return public

"""Docker on the hosts: networks, images (pulled, or streamed from the controller or a peer),
and the swarm that lets workers on several hosts share one attachable overlay network."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from drfleet.hostfacts import Facts, Node
from drfleet.playbook.model import ModuleFailure

COMPOSE = ("com.docker.compose.network", "com.docker.compose.project")
SUBNET_POOL = ipaddress.IPv4Network("10.250.0.0/16")


def free_subnet(used: list[str], pool: ipaddress.IPv4Network = SUBNET_POOL) -> str:
    """The first /24 of the pool that overlaps no route, address or docker network given."""
    taken = []
    for u in used:
        try:
            taken.append(ipaddress.ip_network(u, strict=False))
        except ValueError:
            continue
    for cand in pool.subnets(new_prefix=24):
        if not any(cand.overlaps(t) for t in taken):
            return str(cand)
    raise ModuleFailure(f"no free /24 in {pool} on these hosts; set `subnet:` explicitly")


def used_networks(facts: Facts) -> list[str]:
    net = facts.net
    out = list(net.routes)
    out += [a.cidr for a in net.addresses]
    for n in facts.networks.values():
        out += n.subnets
    return out


def network_args(
    name: str,
    driver: str,
    subnet: str | None,
    attachable: bool,
    labels: dict[str, str],
    encrypted: bool = False,
) -> list[str]:
    argv = ["docker", "network", "create", "--driver", driver]
    if attachable:
        argv += ["--attachable", "--scope", "swarm"]
    if encrypted:
        argv += ["--opt", "encrypted"]  # IPsec ESP between the hosts' VXLAN endpoints
    if subnet:
        argv += ["--subnet", subnet]
    for k, v in sorted(labels.items()):
        argv += ["--label", f"{k}={v}"]
    return [*argv, name]


# -- the swarm: decisions as data ---------------------------------------------------------
@dataclass
class SwarmDecision:
    init: bool = False
    join: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    network: dict[str, Any] | None = None  # what to create, or None
    network_error: str = ""


def advertise_address(host: Any, facts: Facts) -> str:
    override = (host.vars or {}).get("swarm_advertise_addr")
    if override:
        return str(override)
    mine = {a.cidr.split("/")[0] for a in facts.net.addresses}
    if host.address in mine:
        return str(host.address)
    return str(facts.net.default_source or host.address)


def plan_swarm(
    trainer: str,
    hosts: dict[str, Facts],
    network: str,
    subnet: str | None,
    encrypted: bool = False,
) -> SwarmDecision:
    """trainer: its name; hosts: name -> facts (docker, net, networks; ipsec when encrypted).
    Pure. An encrypted overlay needs every host's kernel to do ESP: without it traffic between
    hosts is silently dropped, so such hosts are refused before anything changes."""
    plan = SwarmDecision()
    for name, f in hosts.items():
        if not f.docker.running:
            plan.errors[name] = "docker is not running; provision it first"
        elif encrypted and not f.ipsec.esp:
            why = f.ipsec.error or "no reason given"
            plan.errors[name] = (
                f"the kernel cannot do IPsec ESP with AES-GCM ({why}),"
                f" which the encrypted overlay {network} needs; load it (modprobe esp4) or set "
                "overlay_encrypted: false in the inventory (traffic between hosts then crosses "
                "the network unencrypted)"
            )
    unread = [hosts[trainer].error(n) for n in ("nodes", "networks")]
    if trainer not in plan.errors and any(unread):
        plan.errors[trainer] = "; ".join(e for e in unread if e) + " (the swarm cannot be planned)"
    if trainer in plan.errors:
        return plan
    t = hosts[trainer].docker.swarm
    if t.state == "inactive":
        plan.init = True
    elif t.state == "active" and not t.is_manager:
        plan.errors[trainer] = (
            "the trainer is a worker in another swarm (cluster "
            f"{t.cluster_id[:12]}); leave it: docker swarm leave --force"
        )
        return plan
    elif t.state != "active":
        plan.errors[trainer] = f"swarm state is {t.state!r}; fix or leave that swarm"
        return plan
    # A worker's own `docker info` carries no cluster id; the manager's node list says who
    # belongs to its swarm.
    members = {n.id for n in hosts[trainer].nodes}
    for name, f in hosts.items():
        if name == trainer or name in plan.errors:
            continue
        s = f.docker.swarm
        if s.state == "inactive":
            plan.join.append(name)
        elif s.state == "active" and not plan.init and s.node_id in members:
            continue
        else:
            plan.errors[name] = (
                f"is in a swarm that is not the trainer's (node {s.node_id[:12]}, "
                f"{s.state}); leave it first: docker swarm leave --force"
            )
    existing = hosts[trainer].networks.get(network)
    if existing is None:
        used = [u for f in hosts.values() for u in used_networks(f)]
        plan.network = {
            "name": network,
            "subnet": subnet or free_subnet(used),
            "encrypted": encrypted,
        }
    elif not (existing.driver == "overlay" and existing.attachable):
        plan.network_error = (
            f"network {network} exists on the trainer but is a "
            f"{existing.driver} network, not an attachable overlay; "
            f"remove it (docker network rm {network}) and run again"
        )
    elif existing.encrypted != encrypted:
        plan.network_error = (
            f"network {network} exists {'en' if existing.encrypted else 'un'}encrypted and "
            f"overlay_encrypted is {str(encrypted).lower()}; `drfleet stop`, remove it on the "
            f"trainer (docker network rm {network}) and provision again, or set "
            f"overlay_encrypted: {str(existing.encrypted).lower()} in the inventory"
        )
    return plan


def node_label_changes(
    nodes: list[Node], wanted: dict[str, dict[str, str]]
) -> dict[str, dict[str, str]]:
    """node id -> labels to add, for nodes whose labels lack what is wanted (by node id)."""
    out: dict[str, dict[str, str]] = {}
    have = {n.id: n.labels for n in nodes}
    for node_id, labels in wanted.items():
        missing = {k: v for k, v in labels.items() if have.get(node_id, {}).get(k) != v}
        if missing:
            out[node_id] = missing
    return out

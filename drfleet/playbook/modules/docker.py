"""Docker on the hosts: networks, images (pulled, or streamed from the controller or a peer),
and the swarm that lets workers on several hosts share one attachable overlay network."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from drfleet.hosts.hostfacts import Facts, Node
from drfleet.playbook.model import FleetStep, Late, ModuleFailure, Phase

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
    leave: dict[str, str] = field(default_factory=dict)  # host -> why its swarm is gone
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


def abandoned(facts: Facts, trainer: Facts) -> str:
    """Why a host's swarm is one it can leave without loss, or "": it is a worker (not a
    manager) and every manager it knows is gone: it takes no connection on the swarm port
    from the host, or its address is now the trainer's while the trainer is not that node
    (EC2 hands a lost instance's private address to the next one). Such a swarm can no
    longer place or network anything; its managers came from an earlier trainer (a lost
    host's). A manager that answers, or one not asked about, keeps the swarm: it may be
    the user's own."""
    s = facts.docker.swarm
    if s.state == "inactive" or s.is_manager or not s.managers:
        return ""
    ours = {a.cidr.split("/")[0] for a in trainer.net.addresses}
    tswarm = trainer.docker.swarm
    leader = tswarm.node_id if tswarm.is_manager else ""
    reach = facts.managers
    gone = []
    for m in s.managers:
        if m.addr.rpartition(":")[0].strip("[]") in ours and m.node_id != leader:
            gone.append(f"{m.addr} is now the trainer, not that swarm's manager")
        elif reach.get(m.addr):
            gone.append(f"{m.addr} does not answer ({reach[m.addr]})")
        else:
            return ""
    return "its managers are gone: " + "; ".join(gone)


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
    decision = SwarmDecision()
    for name, f in hosts.items():
        if not f.docker.running:
            decision.errors[name] = "docker is not running; provision it first"
        elif encrypted and not f.ipsec.esp:
            why = f.ipsec.error or "no reason given"
            decision.errors[name] = (
                f"the kernel cannot do IPsec ESP with AES-GCM ({why}),"
                f" which the encrypted overlay {network} needs; load it (modprobe esp4) or set "
                "overlay_encrypted: false in the inventory (traffic between hosts then crosses "
                "the network unencrypted)"
            )
    unread = [hosts[trainer].error(n) for n in ("nodes", "networks")]
    if trainer not in decision.errors and any(unread):
        decision.errors[trainer] = (
            "; ".join(e for e in unread if e) + " (the swarm cannot be planned)"
        )
    if trainer in decision.errors:
        return decision
    t = hosts[trainer].docker.swarm
    gone = abandoned(hosts[trainer], hosts[trainer])
    if gone:
        decision.leave[trainer] = gone
    if t.state == "inactive" or gone:
        decision.init = True
    elif t.state == "active" and not t.is_manager:
        decision.errors[trainer] = (
            "the trainer is a worker in another swarm (cluster "
            f"{t.cluster_id[:12]}); leave it: docker swarm leave --force"
        )
        return decision
    elif t.state != "active":
        decision.errors[trainer] = f"swarm state is {t.state!r}; fix or leave that swarm"
        return decision
    # A worker's own `docker info` carries no cluster id; the manager's node list says who
    # belongs to its swarm.
    members = {n.id for n in hosts[trainer].nodes}
    for name, f in hosts.items():
        if name == trainer or name in decision.errors:
            continue
        s = f.docker.swarm
        gone = "" if s.node_id in members else abandoned(f, hosts[trainer])
        if gone:
            decision.leave[name] = gone
        if s.state == "inactive" or gone:
            decision.join.append(name)
        elif s.state == "active" and not decision.init and s.node_id in members:
            continue
        else:
            decision.errors[name] = (
                f"is in a swarm that is not the trainer's (node {s.node_id[:12]}, "
                f"{s.state}); leave it first: docker swarm leave --force"
            )
    existing = hosts[trainer].networks.get(network)
    if existing is None:
        used = [u for f in hosts.values() for u in used_networks(f)]
        decision.network = {
            "name": network,
            "subnet": subnet or free_subnet(used),
            "encrypted": encrypted,
        }
    elif not (existing.driver == "overlay" and existing.attachable):
        decision.network_error = (
            f"network {network} exists on the trainer but is a "
            f"{existing.driver} network, not an attachable overlay; "
            f"remove it (docker network rm {network}) and run again"
        )
    elif existing.encrypted != encrypted:
        decision.network_error = (
            f"network {network} exists {'en' if existing.encrypted else 'un'}encrypted and "
            f"overlay_encrypted is {str(encrypted).lower()}; `drfleet stop`, remove it on the "
            f"trainer (docker network rm {network}) and provision again, or set "
            f"overlay_encrypted: {str(existing.encrypted).lower()} in the inventory"
        )
    return decision


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


# POST /swarm/join on the host's dockerd, the request body (with the join token) on stdin
JOIN = """\
import json, socket, sys
body = sys.stdin.buffer.read()
s = socket.socket(socket.AF_UNIX)
s.connect("/var/run/docker.sock")
head = "POST /swarm/join HTTP/1.0\\r\\nHost: docker\\r\\nContent-Type: application/json\\r\\n"
s.sendall((head + "Content-Length: %d\\r\\n\\r\\n" % len(body)).encode() + body)
resp = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    resp += chunk
status = resp.split(b" ", 2)[1] if b" " in resp else b"?"
if status != b"200":
    text = resp.split(b"\\r\\n\\r\\n", 1)[-1].decode(errors="replace")
    try:
        text = json.loads(text)["message"]
    except (ValueError, KeyError, TypeError):
        pass
    sys.exit("swarm join: " + text)
"""


JOIN_TOKEN = Late("join_token")
NODE_ID = ("docker", "info", "--format", "{{.Swarm.NodeID}}")


def node_of(name: str) -> Late:
    """The swarm node id a host gets when it inits or joins now (not a secret)."""
    return Late(f"node id of {name}", secret=False)


def wanted_labels(roles: tuple[str, ...], args: dict[str, Any]) -> dict[str, str]:
    """The node labels DRfC's swarm placement reads (Sagemaker, Robomaker) and the
    inventory's own."""
    labels = {str(k): str(v) for k, v in (args.get("labels") or {}).items()}
    if "trainer" in roles:
        labels["Sagemaker"] = "true"
    if "robomaker" in roles:
        labels["Robomaker"] = "true"
    return labels


def swarm_phases(
    trainer: str,
    hosts: dict[str, tuple[Any, Facts]],
    decision: SwarmDecision,
    args: dict[str, Any],
) -> list[Phase]:
    """The swarm task as phases (pure): hosts whose swarm is gone leave it (abandoned);
    init on the trainer; its join token read (a secret,
    late-bound); every joining host joins through dockerd's API with the token on stdin;
    the token rotated (the one handed out is spent); node labels where they lack what is
    wanted (a node made now is known by the id its host reports after joining); the overlay
    created. hosts: name -> (inventory host, facts), the trainer's included."""
    thost, tfacts = hosts[trainer]
    addr = advertise_address(thost, tfacts)
    phases: list[Phase] = []
    fresh = set(decision.join) | ({trainer} if decision.init else set())
    if decision.leave:
        phases.append(
            tuple(
                FleetStep(
                    name,
                    f"leave an abandoned swarm ({why})",
                    ("docker", "swarm", "leave", "--force"),
                    dirty=frozenset({"docker", "nodes", "networks", "managers"}),
                )
                for name, why in sorted(decision.leave.items())
            )
        )
    if decision.init:
        phases.append(
            (
                FleetStep(
                    trainer,
                    f"swarm init (advertise {addr})",
                    ("docker", "swarm", "init", "--advertise-addr", addr),
                    dirty=frozenset({"docker", "nodes"}),
                ),
                FleetStep(trainer, "", NODE_ID, captures=node_of(trainer)),
            )
        )
    if decision.join:
        token = ("docker", "swarm", "join-token", "-q", "worker")
        phases.append((FleetStep(trainer, "", token, captures=JOIN_TOKEN),))
        joins: list[FleetStep] = []
        for name in decision.join:
            host, facts = hosts[name]
            body = {
                "ListenAddr": "0.0.0.0:2377",
                "AdvertiseAddr": advertise_address(host, facts),
                "RemoteAddrs": [f"{addr}:2377"],
                "JoinToken": JOIN_TOKEN,
            }
            joins += [
                FleetStep(
                    name,
                    f"join the swarm of {trainer} ({addr}:2377)",
                    ("python3", "-c", JOIN),
                    stdin=body,
                    dirty=frozenset({"docker"}),
                    timeout=120,
                    fatal=False,
                ),
                FleetStep(name, "", NODE_ID, captures=node_of(name), fatal=False),
            ]
        phases.append(tuple(joins))
        rotate = ("docker", "swarm", "join-token", "--rotate", "-q", "worker")
        phases.append((FleetStep(trainer, "", rotate, secret_output=True),))
    labels: list[FleetStep] = []
    for name, (host, facts) in hosts.items():
        if name in decision.errors:
            continue
        wanted = wanted_labels(tuple(host.roles), args)
        node: str | Late = node_of(name) if name in fresh else facts.docker.swarm.node_id
        if isinstance(node, str):
            if not node:
                continue
            wanted = node_label_changes(list(tfacts.nodes), {node: wanted}).get(node, {})
        if not wanted:
            continue
        argv: list[str | Late] = ["docker", "node", "update"]
        for k, v in sorted(wanted.items()):
            argv += ["--label-add", f"{k}={v}"]
        labels.append(
            FleetStep(
                trainer,
                "node labels " + ", ".join(f"{k}={v}" for k, v in wanted.items()),
                (*argv, node),
                dirty=frozenset({"nodes"}),
                reports=name,
            )
        )
    if labels:
        phases.append(tuple(labels))
    if decision.network:
        net = decision.network
        compose = {k: net["name"] for k in COMPOSE}
        create = network_args(
            net["name"], "overlay", net["subnet"], True, compose, net["encrypted"]
        )
        phases.append(
            (FleetStep(trainer, network_change(net), tuple(create), dirty=frozenset({"networks"})),)
        )
    return phases


def network_change(net: dict[str, Any]) -> str:
    how = "encrypted " if net["encrypted"] else ""
    return f"create {how}overlay {net['name']} ({net['subnet']})"


# -- images: decisions as data -------------------------------------------------------------
@dataclass(frozen=True)
class ImageCopy:
    """One image onto one host: from this controller (its id), from a peer that has it, or
    pulled from the registry."""

    image: str
    source: str  # controller | controller-direct | peer | pull
    image_id: str | None = None
    peer: str | None = None


@dataclass
class ImagePhases:
    """The images task as phases: first the relay (image -> the hosts one relayed copy
    reaches; hosts it misses get their direct copy), then each host's copies, then each
    host's ids recorded for the agent (image -> the identity it must have, None: any)."""

    relay: dict[str, list[str]] = field(default_factory=dict)
    copies: dict[str, list[ImageCopy]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    pin: dict[str, dict[str, str | None]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)


def image_phases(
    source: str,
    wanted: dict[str, list[str]],
    held: dict[str, dict[str, str]],
    unread: dict[str, str],
    controller_ids: dict[str, str | None],
    relay_blocked: dict[str, str | None],
    identities: dict[str, str | None] | None = None,
) -> ImagePhases:
    """Which host gets which image from where (pure). wanted: host -> images; held: host ->
    its images (tag -> identity, probe.identity); unread: hosts whose images could not be
    read (and why); controller_ids: this machine's docker ids (controller sources; what it
    sends); identities: the same images' identities, what a host's copy is compared with
    (default: the ids); relay_blocked: host -> why the relay cannot reach it (None: it can;
    source "controller" only)."""
    identities = controller_ids if identities is None else identities
    out = ImagePhases()
    from_controller = source in ("controller", "controller-direct")
    for name, images in wanted.items():
        if unread.get(name):
            out.failed[name] = f"{name}: {unread[name]}"
            continue
        have, todo = held.get(name, {}), []
        for image in images:
            if from_controller:
                cid = controller_ids.get(image)
                if cid is None:
                    out.failed[name] = (
                        f"{name}: image {image} is not on this controller; "
                        "load or pull it here first, or use --images-from pull"
                    )
                    break
                if have.get(image) != identities.get(image):
                    todo.append(ImageCopy(image, source, image_id=cid))
            elif source == "peer":
                if image not in have:
                    peer = next((h for h in wanted if image in held.get(h, {})), None)
                    if peer is None:
                        out.failed[name] = (
                            f"{name}: no host has {image} to copy from; pull it on "
                            "one host first, or use --images-from controller"
                        )
                        break
                    todo.append(ImageCopy(image, source, peer=peer))
            elif image not in have:
                todo.append(ImageCopy(image, "pull"))
        if name in out.failed:
            continue
        out.copies[name] = todo
        out.pin[name] = {i: identities.get(i) if from_controller else None for i in images}
        for c in todo:
            if source != "controller":
                continue
            why = relay_blocked.get(name)
            if why:
                out.notes.setdefault(name, []).append(f"{c.image}: sent directly ({why})")
            else:
                out.relay.setdefault(c.image, []).append(name)
    return out

"""A fleet on EC2 as `drfleet up` creates it: which hosts, of which type and market, and what
`up` must do to reach them from what the account already holds. Pure: the facts (offerings,
prices, quotas, the instances that carry the fleet's tag) come in as data, see ec2.py.

AWS behaviour this follows: quota codes and vCPU classes from the Service Quotas console
(ec2: L-1216C47A, L-34B43A08, L-DB2E81BA, L-3819A6DF); Canonical's AMI parameters from
"Finding Ubuntu images with the AWS SSM Parameter Store" (ubuntu.com); the swarm's ports from
Docker's "Use overlay networks" (2377/tcp, 7946/tcp+udp, 4789/udp, ESP for --opt encrypted)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from drfleet.errors import DrfleetError, did_you_mean, paren

TAG_FLEET = "drfleet:fleet"  # on every resource `up` creates; `down` ends what carries it
TAG_HOST = "drfleet:host"
TAG_HOSTKEY = "drfleet:hostkey"  # the host key it was given at launch (public half)
UBUNTU = {  # Canonical's public parameters; gp3 images from 23.10 on
    "24.04": "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id",
    "22.04": "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id",
}
SSH_USER = "ubuntu"  # the default user of Canonical's images; root logins are refused
LIVE_STATES = ("pending", "running", "stopping", "stopped")  # what still is (or may bill)
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,23}\Z")
_TTL = re.compile(r"^(\d{1,4})([mhd])\Z")


@dataclass(frozen=True)
class HostSpec:
    name: str
    roles: tuple[str, ...]
    instance_type: str
    spot: bool


@dataclass(frozen=True)
class FleetSpec:
    """What the flags (or the fleet's inventory, on a re-run) ask for."""

    name: str = "drfleet"
    region: str = ""
    workers: int = 2  # hosts with robomaker only, besides the trainer's
    trainer_type: str = "c5.4xlarge"
    worker_type: str = "c5.4xlarge"
    spot: bool = False  # the worker hosts
    trainer_spot: bool = False
    max_price: float | None = None  # USD per host-hour, for spot
    ubuntu: str = "24.04"
    ami: str | None = None
    ssh_from: str = ""  # CIDR of the controller, the only source SSH is open to
    ttl_minutes: int | None = None
    disk_gb: int = 100
    subnet: str | None = None
    bucket: str | None = None  # DR_CLOUD=aws: the instance profile may use this bucket

    def hosts(self) -> list[HostSpec]:
        trainer = HostSpec(
            f"{self.name}-trainer", ("trainer", "robomaker"), self.trainer_type, self.trainer_spot
        )
        return [trainer] + [
            HostSpec(f"{self.name}-w{i}", ("robomaker",), self.worker_type, self.spot)
            for i in range(1, self.workers + 1)
        ]

    def document(self) -> dict[str, Any]:
        """What the inventory keeps, so a re-run of `up` converges to the same fleet."""
        out = {k: v for k, v in self.__dict__.items() if v != getattr(FleetSpec, k, None)}
        return out | {"name": self.name, "region": self.region}


def spec_from(saved: Mapping[str, Any] | None, given: Mapping[str, Any]) -> FleetSpec:
    """The spec: what was saved by the last `up`, with what the flags give over it; checked."""
    fields = set(FleetSpec.__dataclass_fields__)
    merged = {k: v for k, v in (saved or {}).items() if k in fields}
    merged |= {k: v for k, v in given.items() if v is not None and k in fields}
    spec = FleetSpec(**merged)
    return check(spec)


def check(spec: FleetSpec) -> FleetSpec:
    if not _NAME.fullmatch(spec.name):
        raise DrfleetError(
            f"--name {spec.name!r}: a fleet's name is 1-24 lower-case letters, digits and -, "
            "starting with a letter",
            fix="e.g. --name dr1",
        )
    if not spec.region:
        raise DrfleetError(
            "no AWS region named",
            fix="pass --region (e.g. us-east-1), or set AWS_REGION or a region in ~/.aws/config",
        )
    if not 0 <= spec.workers <= 50:
        raise DrfleetError(f"--workers {spec.workers}: from 0 to 50 worker hosts")
    if spec.ubuntu not in UBUNTU:
        raise DrfleetError(
            f"--ubuntu {spec.ubuntu}: drfleet knows Ubuntu {' and '.join(UBUNTU)}",
            fix="pass --ubuntu 24.04, or --ami with an image of your own",
        )
    if spec.max_price is not None and not (spec.spot or spec.trainer_spot):
        raise DrfleetError("--max-price caps spot prices", fix="add --spot, or drop --max-price")
    if spec.max_price is not None and spec.max_price <= 0:
        raise DrfleetError(f"--max-price {spec.max_price}: a price in USD per hour, above 0")
    if not 20 <= spec.disk_gb <= 2000:
        raise DrfleetError(
            f"--disk-gb {spec.disk_gb}: from 20 to 2000 GB (the DeepRacer images take ~25)"
        )
    if spec.ami is not None and not re.fullmatch(r"ami-[0-9a-f]{8,17}", spec.ami):
        raise DrfleetError(f"--ami {spec.ami!r} is not an AMI id (ami-0123456789abcdef0)")
    if not spec.ssh_from:
        raise DrfleetError(
            "no address to open SSH to",
            fix="pass --ssh-from with your controller's public address (1.2.3.4 or 1.2.3.0/24)",
        )
    try:
        net = ipaddress.ip_network(spec.ssh_from, strict=False)
    except ValueError:
        raise DrfleetError(
            f"--ssh-from {spec.ssh_from!r} is not an address or network",
            fix="e.g. --ssh-from 203.0.113.7 (your controller's public address)",
        ) from None
    if net.prefixlen == 0:
        raise DrfleetError(
            f"--ssh-from {spec.ssh_from}: that opens SSH to the whole internet",
            fix="name the controller's address, or the network it is in",
        )
    return replace(spec, ssh_from=str(net))


def ttl_minutes(text: str) -> int:
    """--ttl 90m / 8h / 2d in minutes."""
    m = _TTL.fullmatch(text.strip())
    if not m or int(m.group(1)) == 0:
        raise DrfleetError(
            f"--ttl {text!r}: a time such as 90m, 8h or 2d", fix="e.g. --ttl 8h ends it in 8 hours"
        )
    return int(m.group(1)) * {"m": 1, "h": 60, "d": 1440}[m.group(2)]


# ---- the facts ec2.py gathers -------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    """One instance as DescribeInstances tells it."""

    id: str
    host: str  # its drfleet:host tag
    state: str
    instance_type: str
    spot: bool
    public_ip: str | None = None
    private_ip: str | None = None
    zone: str | None = None


@dataclass(frozen=True)
class Quota:
    code: str
    name: str
    value: float  # vCPUs
    in_use: float


@dataclass
class Facts:
    """What the account and region hold, as far as `up` needs it."""

    offered: set[str]  # instance types the region offers
    vcpus: dict[str, int]  # per instance type
    zones: list[str]  # the zones with a subnet to launch in
    on_demand: dict[str, float | None]  # USD per hour per instance type; None: not known
    spot: dict[str, dict[str, float]]  # per instance type, per zone: the current spot price
    quotas: dict[str, Quota]  # by code
    instances: list[Instance] = field(default_factory=list)  # the fleet's, not terminated


def quota_code(instance_type: str, spot: bool) -> str:
    """The vCPU quota an instance type counts against (G and VT, or standard A,C,D,H,I,M,R,T,Z)."""
    family = instance_type.split(".")[0]
    if family.startswith(("g", "vt")):
        return "L-3819A6DF" if spot else "L-DB2E81BA"
    if family[0] not in "acdhimrtz":
        raise DrfleetError(
            f"{instance_type}: drfleet knows the quotas of standard (A, C, D, H, I, M, R, T, Z) "
            "and G instances only",
            fix="pick a c5, c6i, c7i, m5 or g4dn/g5 type",
        )
    return "L-34B43A08" if spot else "L-1216C47A"


QUOTA_NAMES = {
    "L-1216C47A": "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
    "L-34B43A08": "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests",
    "L-DB2E81BA": "Running On-Demand G and VT instances",
    "L-3819A6DF": "All G and VT Spot Instance Requests",
}


# ---- the plan -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    host: HostSpec
    zone: str
    hourly: float | None  # what it costs per hour now (spot: the zone's price)


@dataclass
class Plan:
    spec: FleetSpec
    launch: list[Launch]
    keep: list[Instance]
    extra: list[Instance]  # carry the fleet's tag but are not in the spec: left as they are
    hourly: dict[str, float | None]  # per host of the fleet after `up`

    @property
    def total(self) -> float | None:
        values = list(self.hourly.values())
        return None if any(v is None for v in values) else sum(v or 0.0 for v in values)


def refusals(spec: FleetSpec, facts: Facts) -> list[str]:
    """Why `up` cannot create what is missing: each a line with its fix. Checked before
    anything is created."""
    missing = _missing(spec, facts)
    out: list[str] = []
    for itype in sorted({h.instance_type for h in spec.hosts()}):
        if itype not in facts.offered:
            hint = paren(did_you_mean(itype, facts.offered))
            out.append(
                f"{itype} is not offered in {spec.region}{hint}: "
                "pick another type (--trainer-type/--worker-type) or --region"
            )
    if out:
        return out
    if spec.max_price is not None:
        for itype in sorted({h.instance_type for h in missing if h.spot}):
            prices = facts.spot.get(itype) or {}
            if not prices:
                continue
            zone, low = min(prices.items(), key=lambda kv: kv[1])
            if spec.max_price < low:
                out.append(
                    f"--max-price {spec.max_price:.4f} is below the spot price of {itype} in "
                    f"{spec.region} (the lowest now {low:.4f} USD/h, in {zone}): raise it, or "
                    "drop --spot for on-demand hosts"
                )
    need: dict[str, int] = {}
    for h in missing:
        code = quota_code(h.instance_type, h.spot)
        need[code] = need.get(code, 0) + facts.vcpus.get(h.instance_type, 0)
    for code, vcpus in sorted(need.items()):
        q = facts.quotas.get(code)
        if q is not None and q.in_use + vcpus > q.value:
            out.append(
                f"these hosts need {vcpus} vCPUs of the quota {q.name!r} in {spec.region}; it "
                f"is {q.value:g} and {q.in_use:g} are in use: ask AWS for more in the Service "
                f"Quotas console (ec2, {code}), or use fewer or smaller hosts"
            )
    return out


def _missing(spec: FleetSpec, facts: Facts) -> list[HostSpec]:
    have = {i.host for i in facts.instances if i.state in LIVE_STATES}
    return [h for h in spec.hosts() if h.name not in have]


def plan(spec: FleetSpec, facts: Facts) -> Plan:
    """Converge: every host of the spec that has no live instance is launched, in the zone
    where its price is lowest; live ones are kept; tagged instances the spec no longer names
    are listed and left alone (`down` ends them)."""
    if not facts.zones:
        raise DrfleetError(
            f"no subnet to launch in, in {spec.region}",
            fix="create a default VPC (aws ec2 create-default-vpc), or pass --subnet",
        )
    names = {h.name for h in spec.hosts()}
    live = [i for i in facts.instances if i.state in LIVE_STATES]
    keep = [i for i in live if i.host in names]
    extra = [i for i in live if i.host not in names]
    launch = []
    for h in _missing(spec, facts):
        zone, price = facts.zones[0], facts.on_demand.get(h.instance_type)
        if h.spot:
            prices = {z: p for z, p in (facts.spot.get(h.instance_type) or {}).items()}
            usable = {z: p for z, p in prices.items() if z in facts.zones}
            if usable:
                zone, price = min(usable.items(), key=lambda kv: (kv[1], kv[0]))
            else:
                price = None
        launch.append(Launch(h, zone, price))
    hourly: dict[str, float | None] = {}
    for i in keep:
        hourly[i.host] = (
            (facts.spot.get(i.instance_type) or {}).get(i.zone or "")
            if i.spot
            else facts.on_demand.get(i.instance_type)
        )
    for one in launch:
        hourly[one.host.name] = one.hourly
    return Plan(spec, launch, keep, extra, hourly)


def cautions(spec: FleetSpec, storage: str) -> list[str]:
    """What the fleet as asked for puts at risk (pure): a spot trainer with DR_CLOUD=local
    keeps the run's model in minio on a disk EC2 deletes when it takes the host back."""
    out = []
    if spec.trainer_spot and storage == "local":
        out.append(
            "warning: the trainer is a spot host and DR_CLOUD=local keeps the model in minio on "
            "its disk: an interruption loses the model, not only the run. Drop --trainer-spot, "
            "or train with DR_CLOUD=aws or remote"
        )
    return out


def plan_lines(p: Plan) -> Iterator[str]:
    for one in p.launch:
        market = "spot" if one.host.spot else "on-demand"
        yield (
            f"create {one.host.name}: {one.host.instance_type} {market} in {one.zone}, "
            f"{_usd(one.hourly)}/h"
        )
    for i in p.keep:
        price = _usd(p.hourly.get(i.host))
        yield f"keep   {i.host}: {i.id} {i.instance_type} ({i.state}), {price}/h"
    for i in p.extra:
        yield f"leave  {i.id} ({i.host or 'no drfleet:host tag'}): not in this fleet's spec"
    cap = f" (spot capped at {p.spec.max_price:.4f} USD/h)" if p.spec.max_price else ""
    yield f"the fleet costs {_usd(p.total)} per hour{cap}, besides its disks and traffic"
    if p.spec.ttl_minutes:
        yield f"each new host ends itself {_duration(p.spec.ttl_minutes)} after it boots (--ttl)"


def _usd(value: float | None) -> str:
    return "an unknown price" if value is None else f"{value:.4f} USD"


def _duration(minutes: int) -> str:
    if minutes % 1440 == 0:
        return f"{minutes // 1440} d"
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


# ---- what is created ----------------------------------------------------------------------


def ingress(ssh_from: str, group_id: str) -> list[dict[str, Any]]:
    """The fleet's security group: SSH from the controller only; the swarm's ports and ESP
    from the group's own members only. Nothing else is open."""
    members = [{"GroupId": group_id, "Description": "drfleet fleet members"}]
    rules: list[dict[str, Any]] = [
        {
            "IpProtocol": "tcp",
            "FromPort": 22,
            "ToPort": 22,
            "IpRanges": [{"CidrIp": ssh_from, "Description": "drfleet controller SSH"}],
        }
    ]
    for proto, port in (("tcp", 2377), ("tcp", 7946), ("udp", 7946), ("udp", 4789)):
        rules.append(
            {"IpProtocol": proto, "FromPort": port, "ToPort": port, "UserIdGroupPairs": members}
        )
    # ESP, for the encrypted overlay. Ports mean nothing to it; -1 says "all" as EC2 reads it
    rules.append({"IpProtocol": "50", "FromPort": -1, "ToPort": -1, "UserIdGroupPairs": members})
    return rules


def user_data(spec: FleetSpec, host_key: tuple[str, str] | None) -> str:
    """cloud-config for a new host: the host key drfleet pinned before it booted (so the
    first SSH connection is verified, not trusted), and --ttl as a power-off that the
    instance's terminate-on-shutdown turns into its end, even with the controller gone."""
    lines = ["#cloud-config"]
    if host_key:
        private, public = host_key
        lines += [
            "ssh_deletekeys: true",
            "ssh_genkeytypes: [ed25519]",  # the one given: nothing else is made
            "ssh_keys:",
            "  ed25519_private: |",
            *[f"    {line}" for line in private.strip().splitlines()],
            f"  ed25519_public: {public.strip()}",
        ]
    if spec.ttl_minutes:
        lines += [
            "power_state:",
            "  mode: poweroff",
            f"  delay: {spec.ttl_minutes}",  # minutes; cloud-init 22.1 (jammy) and 24 read it
            "  message: drfleet --ttl reached",
            "  condition: true",
        ]
    return "\n".join(lines) + "\n"


def tags(spec: FleetSpec, host: str | None = None) -> list[dict[str, str]]:
    out = [{"Key": TAG_FLEET, "Value": spec.name}]
    if host:
        out += [{"Key": TAG_HOST, "Value": host}, {"Key": "Name", "Value": host}]
    else:
        out += [{"Key": "Name", "Value": f"drfleet-{spec.name}"}]
    return out


def s3_policy(bucket: str) -> dict[str, Any]:
    """The instance role's one policy: the run's bucket (DR_CLOUD=aws), nothing else."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
                "Resource": f"arn:aws:s3:::{bucket}",
            },
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": f"arn:aws:s3:::{bucket}/*",
            },
        ],
    }


EC2_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def resource_name(spec: FleetSpec) -> str:
    """The key pair's, the group's, the role's and the instance profile's name."""
    return f"drfleet-{spec.name}"


def by_host(instances: Sequence[Instance]) -> dict[str, Instance]:
    return {i.host: i for i in instances if i.state in LIVE_STATES}

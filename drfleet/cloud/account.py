"""What an AWS account holds, as `drfleet up` needs to know it: the session and its
credentials, one call's refusal as one line, and the facts fleet.py decides on (offerings,
prices, quotas, the fleet's instances). Every client honours AWS_ENDPOINT_URL (botocore),
which is how the tests point it at their stand-in."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from drfleet.cloud import fleet
from drfleet.cloud.fleet import TAG_HOSTKEY, Facts, FleetSpec, Instance, Quota
from drfleet.errors import DrfleetError

PRICING_REGION = "us-east-1"  # the Price List API answers in us-east-1 for every region


def session(region: str | None) -> Any:
    """A boto3 session in the region asked for, else the profile's or AWS_REGION's; checked
    for credentials before anything is asked of AWS."""
    import boto3
    import botocore.exceptions

    try:
        s = boto3.Session(region_name=region or None)
    except botocore.exceptions.ProfileNotFound as exc:
        raise DrfleetError(str(exc), fix="name a profile of ~/.aws/config in AWS_PROFILE") from None
    if s.get_credentials() is None:
        raise DrfleetError(
            "no AWS credentials found",
            fix="run `aws configure` (or `aws sso login`), or set AWS_PROFILE or "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        )
    return s


def call(what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
    """One AWS call; a refusal becomes one line naming the call, AWS's code and message."""
    import botocore.exceptions

    try:
        return fn(**kwargs)
    except botocore.exceptions.NoCredentialsError:
        raise DrfleetError(
            "no AWS credentials found", fix="run `aws configure`, or set AWS_PROFILE"
        ) from None
    except botocore.exceptions.ClientError as exc:
        err = exc.response.get("Error", {})
        code, message = err.get("Code", "?"), err.get("Message", "")
        raise DrfleetError(f"AWS refused {what}: {code}: {message}", fix=_fix(code)) from None
    except botocore.exceptions.BotoCoreError as exc:
        raise DrfleetError(f"AWS could not be asked ({what}): {exc}") from None


def _fix(code: str) -> str | None:
    if code in ("AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken"):
        return "your AWS keys are wrong or expired: `aws sts get-caller-identity` shows which"
    if code in ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException"):
        return "your AWS user or role lacks this permission (docs/aws.md lists what drfleet needs)"
    if code == "VcpuLimitExceeded":
        return "ask for more vCPUs in the Service Quotas console, or use fewer or smaller hosts"
    if code in ("InsufficientInstanceCapacity", "MaxSpotInstanceCountExceeded"):
        return "try again later, another --worker-type, or on-demand hosts (drop --spot)"
    return None


def identity(s: Any) -> str:
    sts = s.client("sts")
    return str(call("sts:GetCallerIdentity", sts.get_caller_identity)["Arn"])


# ---- facts -------------------------------------------------------------------------------


def gather(s: Any, spec: FleetSpec) -> Facts:
    ec2 = s.client("ec2")
    types = sorted({h.instance_type for h in spec.hosts()})
    offered = _offered(ec2)  # all of the region's: a misspelt type gets a suggestion
    vcpus = _vcpus(ec2, [t for t in types if t in offered])
    zones = [z for z, _ in _subnets(ec2, spec)]
    spot = {t: _spot_prices(ec2, t) for t in types if t in offered}
    return Facts(
        offered=offered,
        vcpus=vcpus,
        zones=zones,
        on_demand={t: _on_demand_price(s, spec.region, t) for t in types},
        spot=spot,
        quotas=_quotas(s, ec2, spec, vcpus),
        instances=instances(ec2, spec.name),
    )


def _offered(ec2: Any) -> set[str]:
    pages = ec2.get_paginator("describe_instance_type_offerings").paginate(LocationType="region")
    got = call("ec2:DescribeInstanceTypeOfferings", lambda: list(pages))
    return {o["InstanceType"] for page in got for o in page["InstanceTypeOfferings"]}


def _vcpus(ec2: Any, types: list[str]) -> dict[str, int]:
    out = {}
    for chunk in _chunks(types, 100):
        got = call("ec2:DescribeInstanceTypes", ec2.describe_instance_types, InstanceTypes=chunk)
        for t in got["InstanceTypes"]:
            out[t["InstanceType"]] = int(t["VCpuInfo"]["DefaultVCpus"])
    return out


def _chunks(items: list[str], n: int) -> list[list[str]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


def _subnets(ec2: Any, spec: FleetSpec) -> list[tuple[str, str]]:
    """(zone, subnet id): the one named, else the default VPC's default subnets."""
    if spec.subnet:
        got = call("ec2:DescribeSubnets", ec2.describe_subnets, SubnetIds=[spec.subnet])
    else:
        got = call(
            "ec2:DescribeSubnets",
            ec2.describe_subnets,
            Filters=[{"Name": "default-for-az", "Values": ["true"]}],
        )
    return sorted((n["AvailabilityZone"], n["SubnetId"]) for n in got["Subnets"])


def _spot_prices(ec2: Any, itype: str) -> dict[str, float]:
    """The newest spot price per zone (DescribeSpotPriceHistory from now on: one per zone)."""
    got = call(
        "ec2:DescribeSpotPriceHistory",
        ec2.describe_spot_price_history,
        InstanceTypes=[itype],
        ProductDescriptions=["Linux/UNIX"],
        StartTime=time.time(),
    )
    newest: dict[str, tuple[Any, float]] = {}
    for h in got["SpotPriceHistory"]:
        zone, stamp = h["AvailabilityZone"], h.get("Timestamp")
        if zone not in newest or (stamp and newest[zone][0] and stamp > newest[zone][0]):
            newest[zone] = (stamp, float(h["SpotPrice"]))
    return {z: p for z, (_, p) in newest.items()}


def _on_demand_price(s: Any, region: str, itype: str) -> float | None:
    """Linux, shared tenancy, no pre-installed software: the Price List API's OnDemand term.
    None when the API is refused (a price is shown as unknown; nothing else depends on it)."""
    import botocore.exceptions

    pricing = s.client("pricing", region_name=PRICING_REGION)
    filters = {
        "instanceType": itype,
        "regionCode": region,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
    }
    try:
        got = pricing.get_products(
            ServiceCode="AmazonEC2",
            Filters=[{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in filters.items()],
            MaxResults=10,
        )
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
        return None
    for item in got.get("PriceList", []):
        product = json.loads(item) if isinstance(item, str) else item
        for term in (product.get("terms", {}).get("OnDemand") or {}).values():
            for dim in (term.get("priceDimensions") or {}).values():
                usd = (dim.get("pricePerUnit") or {}).get("USD")
                if usd is not None and dim.get("unit") == "Hrs":
                    return float(usd)
    return None


def _quotas(s: Any, ec2: Any, spec: FleetSpec, vcpus: dict[str, int]) -> dict[str, Quota]:
    """The vCPU quotas the new hosts count against, with what runs in the region against
    them now (all running instances of the account, not only drfleet's)."""
    import botocore.exceptions

    codes = {fleet.quota_code(h.instance_type, h.spot) for h in spec.hosts()}
    sq = s.client("service-quotas")
    in_use = _vcpus_in_use(ec2)
    out = {}
    for code in sorted(codes):
        try:
            got = sq.get_service_quota(ServiceCode="ec2", QuotaCode=code)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchResourceException",):
                continue  # the account has the default, which AWS does not say: EC2 decides
            raise DrfleetError(
                f"AWS refused servicequotas:GetServiceQuota ({code}): {exc}", fix=_fix("")
            ) from None
        out[code] = Quota(
            code, fleet.QUOTA_NAMES[code], float(got["Quota"]["Value"]), in_use.get(code, 0.0)
        )
    return out


def _vcpus_in_use(ec2: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )
    for page in call("ec2:DescribeInstances", lambda: list(pages)):
        for r in page["Reservations"]:
            for i in r["Instances"]:
                cpu = i.get("CpuOptions") or {}
                n = int(cpu.get("CoreCount", 1)) * int(cpu.get("ThreadsPerCore", 1))
                spot = i.get("InstanceLifecycle") == "spot"
                try:
                    code = fleet.quota_code(i["InstanceType"], spot)
                except DrfleetError:
                    continue
                out[code] = out.get(code, 0.0) + n
    return out


def instances(ec2: Any, name: str) -> list[Instance]:
    """The fleet's instances that are not terminated, by its tag."""
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[
            {"Name": f"tag:{fleet.TAG_FLEET}", "Values": [name]},
            {"Name": "instance-state-name", "Values": [*fleet.LIVE_STATES, "shutting-down"]},
        ]
    )
    out = []
    for page in call("ec2:DescribeInstances", lambda: list(pages)):
        for r in page["Reservations"]:
            for i in r["Instances"]:
                tags = {t["Key"]: t["Value"] for t in i.get("Tags", [])}
                out.append(
                    Instance(
                        id=i["InstanceId"],
                        host=tags.get(fleet.TAG_HOST, ""),
                        state=i["State"]["Name"],
                        instance_type=i["InstanceType"],
                        spot=i.get("InstanceLifecycle") == "spot",
                        public_ip=i.get("PublicIpAddress"),
                        private_ip=i.get("PrivateIpAddress"),
                        zone=(i.get("Placement") or {}).get("AvailabilityZone"),
                    )
                )
    return sorted(out, key=lambda i: (i.host, i.id))


def host_keys(ec2: Any, name: str) -> dict[str, str]:
    """The host key each instance was given at launch (its drfleet:hostkey tag), by host."""
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": f"tag:{fleet.TAG_FLEET}", "Values": [name]}]
    )
    out = {}
    for page in call("ec2:DescribeInstances", lambda: list(pages)):
        for r in page["Reservations"]:
            for i in r["Instances"]:
                tags = {t["Key"]: t["Value"] for t in i.get("Tags", [])}
                if i["State"]["Name"] in fleet.LIVE_STATES and TAG_HOSTKEY in tags:
                    out[tags.get(fleet.TAG_HOST, "")] = tags[TAG_HOSTKEY]
    return out

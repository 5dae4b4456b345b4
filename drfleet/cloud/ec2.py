"""The AWS edge of `drfleet up` and `drfleet down` that changes the account: the fleet's key
pair, security group, instance role, instances; and their end. Resources are found by the
fleet's tag (fleet.TAG_FLEET) or by the name `drfleet-<fleet>` that `up` gives them, never by
guessing: `down` ends what `up` created and nothing else."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drfleet.cloud import fleet
from drfleet.cloud.account import _fix, _subnets, call, instances
from drfleet.cloud.fleet import TAG_HOSTKEY, FleetSpec, Instance, Plan
from drfleet.errors import DrfleetError

Say = Callable[[str, str], None]  # (host or "fleet", what is happening)
PROFILE_RETRY = 20  # a new instance profile takes seconds before RunInstances accepts it


# ---- up ----------------------------------------------------------------------------------


def ensure_key_pair(ec2: Any, spec: FleetSpec, public_key: str) -> str:
    name = fleet.resource_name(spec)
    got = ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [name]}])
    if not got["KeyPairs"]:
        call(
            "ec2:ImportKeyPair",
            ec2.import_key_pair,
            KeyName=name,
            PublicKeyMaterial=public_key.encode(),
            TagSpecifications=[{"ResourceType": "key-pair", "Tags": fleet.tags(spec)}],
        )
    return name


def ensure_group(ec2: Any, spec: FleetSpec, vpc_id: str) -> str:
    """The fleet's security group, with exactly fleet.ingress's rules (SSH from a changed
    --ssh-from is moved, not added to)."""
    name = fleet.resource_name(spec)
    got = call(
        "ec2:DescribeSecurityGroups",
        ec2.describe_security_groups,
        Filters=[
            {"Name": "group-name", "Values": [name]},
            {"Name": "vpc-id", "Values": [vpc_id]},
        ],
    )["SecurityGroups"]
    if got:
        group_id = got[0]["GroupId"]
        have = got[0].get("IpPermissions", [])
    else:
        group_id = call(
            "ec2:CreateSecurityGroup",
            ec2.create_security_group,
            GroupName=name,
            Description=f"drfleet fleet {spec.name}: SSH from the controller, swarm among members",
            VpcId=vpc_id,
            TagSpecifications=[{"ResourceType": "security-group", "Tags": fleet.tags(spec)}],
        )["GroupId"]
        have = []
    want = fleet.ingress(spec.ssh_from, group_id)
    if _rules(have) != _rules(want):
        if have:
            call(
                "ec2:RevokeSecurityGroupIngress",
                ec2.revoke_security_group_ingress,
                GroupId=group_id,
                IpPermissions=_bare(have),
            )
        call(
            "ec2:AuthorizeSecurityGroupIngress",
            ec2.authorize_security_group_ingress,
            GroupId=group_id,
            IpPermissions=want,
        )
    return str(group_id)


def _rules(perms: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    out = set()
    for p in perms:
        proto = str(p.get("IpProtocol"))
        ported = proto in ("tcp", "udp", "icmp", "6", "17", "1")
        key = (proto, p.get("FromPort") if ported else None, p.get("ToPort") if ported else None)
        for r in p.get("IpRanges", []):
            out.add((*key, r.get("CidrIp")))
        for g in p.get("UserIdGroupPairs", []):
            out.add((*key, g.get("GroupId")))
    return out


def _bare(perms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keep = ("IpProtocol", "FromPort", "ToPort", "IpRanges", "UserIdGroupPairs")
    out = []
    for p in perms:
        q = {k: v for k, v in p.items() if k in keep and v not in ([], None)}
        if "UserIdGroupPairs" in q:
            q["UserIdGroupPairs"] = [{"GroupId": g["GroupId"]} for g in q["UserIdGroupPairs"]]
        if "IpRanges" in q:
            q["IpRanges"] = [{"CidrIp": r["CidrIp"]} for r in q["IpRanges"]]
        out.append(q)
    return out


def ensure_profile(s: Any, spec: FleetSpec) -> str | None:
    """DR_CLOUD=aws: a role the hosts' containers take their S3 keys from (through IMDS), for
    the run's bucket alone."""
    if not spec.bucket:
        return None
    import botocore.exceptions

    iam = s.client("iam")
    name = fleet.resource_name(spec)
    tags = [{"Key": fleet.TAG_FLEET, "Value": spec.name}]
    try:
        iam.get_role(RoleName=name)
    except botocore.exceptions.ClientError:
        call(
            "iam:CreateRole",
            iam.create_role,
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(fleet.EC2_TRUST),
            Description=f"drfleet fleet {spec.name}: S3 bucket {spec.bucket}",
            Tags=tags,
        )
    call(
        "iam:PutRolePolicy",
        iam.put_role_policy,
        RoleName=name,
        PolicyName="drfleet-s3",
        PolicyDocument=json.dumps(fleet.s3_policy(spec.bucket)),
    )
    try:
        got = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    except botocore.exceptions.ClientError:
        got = call(
            "iam:CreateInstanceProfile",
            iam.create_instance_profile,
            InstanceProfileName=name,
            Tags=tags,
        )["InstanceProfile"]
    if not any(r["RoleName"] == name for r in got.get("Roles", [])):
        call(
            "iam:AddRoleToInstanceProfile",
            iam.add_role_to_instance_profile,
            InstanceProfileName=name,
            RoleName=name,
        )
    return name


@dataclass
class Launched:
    instances: list[Instance]
    host_keys: dict[str, str] = field(default_factory=dict)  # host -> "ssh-ed25519 AAAA..."


def launch(s: Any, p: Plan, public_key: str, say: Say) -> Launched:
    """Creates what the plan lacks (key pair, group, profile, instances) and waits until every
    instance of the fleet runs with an address. Idempotent: a re-run creates only what is
    missing."""
    from drfleet.cloud import hostkey

    spec = p.spec
    ec2 = s.client("ec2")
    subnets = dict(_subnets(ec2, spec))
    vpc = _vpc_of(ec2, next(iter(subnets.values())))
    say("fleet", "key pair, security group")
    key_name = ensure_key_pair(ec2, spec, public_key)
    group = ensure_group(ec2, spec, vpc)
    profile = ensure_profile(s, spec)
    image = _image(s, spec)
    root = _root_device(ec2, image)
    keys: dict[str, str] = {}
    for one in p.launch:
        h = one.host
        private, public = hostkey.generate(h.name)
        keys[h.name] = public
        say(h.name, f"launching {h.instance_type} {'spot' if h.spot else 'on-demand'}")
        args: dict[str, Any] = {
            "ImageId": image,
            "InstanceType": h.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "KeyName": key_name,
            "UserData": fleet.user_data(spec, (private, public)),
            "InstanceInitiatedShutdownBehavior": "terminate",
            "NetworkInterfaces": [
                {
                    "DeviceIndex": 0,
                    "SubnetId": subnets[one.zone],
                    "Groups": [group],
                    "AssociatePublicIpAddress": True,
                    "DeleteOnTermination": True,
                }
            ],
            "BlockDeviceMappings": [
                {
                    "DeviceName": root,
                    "Ebs": {
                        "VolumeSize": spec.disk_gb,
                        "VolumeType": "gp3",
                        "DeleteOnTermination": True,
                    },
                }
            ],
            # IMDSv2 only; 2 hops so containers on the docker bridge reach it (role keys)
            "MetadataOptions": {
                "HttpTokens": "required",
                "HttpPutResponseHopLimit": 2,
                "HttpEndpoint": "enabled",
                "InstanceMetadataTags": "disabled",
            },
            "TagSpecifications": [
                {
                    "ResourceType": "instance",
                    "Tags": [*fleet.tags(spec, h.name), {"Key": TAG_HOSTKEY, "Value": public}],
                },
                {"ResourceType": "volume", "Tags": fleet.tags(spec, h.name)},
            ],
        }
        if h.spot:
            opts: dict[str, Any] = {
                "SpotInstanceType": "one-time",
                "InstanceInterruptionBehavior": "terminate",
            }
            if spec.max_price is not None:
                opts["MaxPrice"] = f"{spec.max_price:.4f}"
            args["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": opts}
        if profile:
            args["IamInstanceProfile"] = {"Name": profile}
        _run_instance(ec2, args, profile is not None)
    return Launched(_wait_running(ec2, spec, say), keys)


def _run_instance(ec2: Any, args: dict[str, Any], has_profile: bool) -> None:
    import botocore.exceptions

    for attempt in range(PROFILE_RETRY):
        try:
            ec2.run_instances(**args)
            return
        except botocore.exceptions.ClientError as exc:
            err = exc.response.get("Error", {})
            # IAM is eventually consistent: a profile created a moment ago is "invalid"
            profile_lag = has_profile and "instance profile" in err.get("Message", "").lower()
            if profile_lag and attempt + 1 < PROFILE_RETRY:
                time.sleep(3)
                continue
            raise DrfleetError(
                f"AWS refused ec2:RunInstances: {err.get('Code')}: {err.get('Message')}",
                fix=_fix(str(err.get("Code"))),
            ) from None


def _vpc_of(ec2: Any, subnet: str) -> str:
    got = call("ec2:DescribeSubnets", ec2.describe_subnets, SubnetIds=[subnet])
    return str(got["Subnets"][0]["VpcId"])


def _image(s: Any, spec: FleetSpec) -> str:
    if spec.ami:
        return spec.ami
    ssm = s.client("ssm")
    name = fleet.UBUNTU[spec.ubuntu]
    got = call(f"ssm:GetParameter {name}", ssm.get_parameter, Name=name)
    return str(got["Parameter"]["Value"])


def _root_device(ec2: Any, image: str) -> str:
    got = call("ec2:DescribeImages", ec2.describe_images, ImageIds=[image])["Images"]
    if not got:
        raise DrfleetError(f"{image}: no such image in this region", fix="check --ami/--region")
    return str(got[0].get("RootDeviceName") or "/dev/sda1")


def _wait_running(ec2: Any, spec: FleetSpec, say: Say, limit: float = 600.0) -> list[Instance]:
    deadline = time.monotonic() + limit
    while True:
        now = [i for i in instances(ec2, spec.name) if i.state in fleet.LIVE_STATES]
        waiting = [i for i in now if i.state == "pending" or not _address(i)]
        for i in now:
            say(i.host, f"{i.state} {_address(i) or ''}".strip())
        if not waiting:
            return now
        if time.monotonic() > deadline:
            raise DrfleetError(
                f"{', '.join(i.host for i in waiting)}: not running after {limit:.0f} s",
                fix="see the instances in the EC2 console; `drfleet up` again waits for them",
            )
        time.sleep(3)


def _address(i: Instance) -> str | None:
    return i.public_ip or i.private_ip


# ---- down --------------------------------------------------------------------------------


@dataclass
class Removed:
    instances: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    key_pairs: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)


def down(s: Any, name: str, say: Say, limit: float = 900.0) -> Removed:
    """Ends the fleet's instances and waits until they are gone, then deletes its group, key
    pair, instance profile, role and any volume left with its tag."""
    import botocore.exceptions

    ec2 = s.client("ec2")
    out = Removed()
    live = [i for i in instances(ec2, name)]
    if live:
        ids = [i.id for i in live]
        for i in live:
            say(i.host or i.id, "terminating")
        call("ec2:TerminateInstances", ec2.terminate_instances, InstanceIds=ids)
        out.instances = ids
        deadline = time.monotonic() + limit
        while instances(ec2, name):
            if time.monotonic() > deadline:
                raise DrfleetError(
                    f"fleet {name}: instances not terminated after {limit:.0f} s",
                    fix="`drfleet down` again finishes the rest",
                )
            time.sleep(3)
    for i in live:
        say(i.host or i.id, "terminated")
    tag = [{"Name": f"tag:{fleet.TAG_FLEET}", "Values": [name]}]
    for v in call("ec2:DescribeVolumes", ec2.describe_volumes, Filters=tag)["Volumes"]:
        call("ec2:DeleteVolume", ec2.delete_volume, VolumeId=v["VolumeId"])
        out.volumes.append(v["VolumeId"])
    groups = call("ec2:DescribeSecurityGroups", ec2.describe_security_groups, Filters=tag)
    for g in groups["SecurityGroups"]:
        _delete_group(ec2, g["GroupId"])
        out.groups.append(g["GroupId"])
    keys = call("ec2:DescribeKeyPairs", ec2.describe_key_pairs, Filters=tag)["KeyPairs"]
    for k in keys:
        call("ec2:DeleteKeyPair", ec2.delete_key_pair, KeyName=k["KeyName"])
        out.key_pairs.append(k["KeyName"])
    iam = s.client("iam")
    rname = f"drfleet-{name}"
    try:
        prof = iam.get_instance_profile(InstanceProfileName=rname)["InstanceProfile"]
    except botocore.exceptions.ClientError:
        prof = None
    try:
        role_tags = iam.list_role_tags(RoleName=rname)
    except botocore.exceptions.ClientError:
        role_tags = None
    ours = role_tags is not None and _tagged(role_tags, name)
    # the profile carries the tag too (GetInstanceProfile says it); up makes both together
    if prof and (_tagged(prof, name) or (ours and not prof.get("Tags"))):
        for r in prof.get("Roles", []):
            call(
                "iam:RemoveRoleFromInstanceProfile",
                iam.remove_role_from_instance_profile,
                InstanceProfileName=rname,
                RoleName=r["RoleName"],
            )
        call("iam:DeleteInstanceProfile", iam.delete_instance_profile, InstanceProfileName=rname)
        out.profiles.append(rname)
    if ours:
        for policy in iam.list_role_policies(RoleName=rname)["PolicyNames"]:
            call("iam:DeleteRolePolicy", iam.delete_role_policy, RoleName=rname, PolicyName=policy)
        call("iam:DeleteRole", iam.delete_role, RoleName=rname)
        out.roles.append(rname)
    return out


def _tagged(got: dict[str, Any], name: str) -> bool:
    return any(t["Key"] == fleet.TAG_FLEET and t["Value"] == name for t in got.get("Tags", []))


def _delete_group(ec2: Any, group_id: str) -> None:
    """A group is deleted once no network interface uses it: that lags termination a little."""
    import botocore.exceptions

    for _ in range(40):
        try:
            ec2.delete_security_group(GroupId=group_id)
            return
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "DependencyViolation":
                raise DrfleetError(
                    f"AWS refused ec2:DeleteSecurityGroup {group_id}: {exc}"
                ) from None
            time.sleep(3)
    raise DrfleetError(
        f"security group {group_id} is still in use", fix="`drfleet down` again removes it"
    )


def remains(s: Any, name: str) -> list[str]:
    """What still carries the fleet's tag or name: what `down` says remains (and bills)."""
    import botocore.exceptions

    ec2 = s.client("ec2")
    tag = [{"Name": f"tag:{fleet.TAG_FLEET}", "Values": [name]}]
    out = [f"instance {i.id} ({i.host}, {i.state})" for i in instances(ec2, name)]
    out += [f"volume {v['VolumeId']}" for v in ec2.describe_volumes(Filters=tag)["Volumes"]]
    out += [
        f"security group {g['GroupId']}"
        for g in ec2.describe_security_groups(Filters=tag)["SecurityGroups"]
    ]
    out += [f"key pair {k['KeyName']}" for k in ec2.describe_key_pairs(Filters=tag)["KeyPairs"]]
    iam = s.client("iam")
    for what, fn, arg in (
        ("instance profile", iam.get_instance_profile, "InstanceProfileName"),
        ("role", iam.get_role, "RoleName"),
    ):
        try:
            fn(**{arg: f"drfleet-{name}"})
            out.append(f"{what} drfleet-{name}")
        except botocore.exceptions.ClientError:
            pass
    return out

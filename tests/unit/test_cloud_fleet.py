"""The pure core of `drfleet up`: the spec, its checks, the plan, the refusals, the group's
rules and the user data."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from drfleet.cloud import fleet, fleetfiles, hostkey
from drfleet.cloud.fleet import Facts, FleetSpec, Instance, Quota
from drfleet.errors import DrfleetError

SPEC = FleetSpec(name="dr1", region="us-east-1", ssh_from="203.0.113.7/32")


def facts(**kw: object) -> Facts:
    base: dict[str, object] = {
        "offered": {"c5.4xlarge", "g4dn.2xlarge"},
        "vcpus": {"c5.4xlarge": 16, "g4dn.2xlarge": 8},
        "zones": ["us-east-1a", "us-east-1b"],
        "on_demand": {"c5.4xlarge": 0.68, "g4dn.2xlarge": 0.752},
        "spot": {"c5.4xlarge": {"us-east-1a": 0.26, "us-east-1b": 0.24, "us-east-1c": 0.2}},
        "quotas": {},
    }
    return Facts(**(base | kw))  # type: ignore[arg-type]


def test_hosts_are_a_trainer_that_also_runs_workers_and_worker_hosts() -> None:
    hosts = SPEC.hosts()
    assert [(h.name, h.roles, h.spot) for h in hosts] == [
        ("dr1-trainer", ("trainer", "robomaker"), False),
        ("dr1-w1", ("robomaker",), False),
        ("dr1-w2", ("robomaker",), False),
    ]


def test_the_spec_is_checked_with_a_fix() -> None:
    given = {"name": "dr1", "region": "us-east-1", "ssh_from": "203.0.113.7"}
    assert fleet.spec_from(None, given).ssh_from == "203.0.113.7/32"
    bad = [
        ({"name": "Dr_1"}, "a fleet's name"),
        ({"region": ""}, "no AWS region"),
        ({"ssh_from": "0.0.0.0/0"}, "whole internet"),
        ({"ssh_from": "here"}, "not an address"),
        ({"max_price": 0.2}, "--max-price caps spot prices"),
        ({"ubuntu": "20.04"}, "Ubuntu 24.04 and 22.04"),
        ({"ami": "ubuntu"}, "not an AMI id"),
        ({"disk_gb": 8}, "from 20 to 2000"),
    ]
    for change, said in bad:
        with pytest.raises(DrfleetError, match=said):
            fleet.spec_from(None, given | change)


def test_saved_spec_is_the_default_and_flags_win() -> None:
    saved = SPEC.document() | {"workers": 4, "spot": True}
    spec = fleet.spec_from(saved, {"workers": 1, "region": None})
    assert (spec.workers, spec.spot, spec.region, spec.name) == (1, True, "us-east-1", "dr1")


def test_ttl() -> None:
    assert [fleet.ttl_minutes(t) for t in ("90m", "8h", "2d")] == [90, 480, 2880]
    for bad in ("0h", "8", "1w", "-1h"):
        with pytest.raises(DrfleetError, match="--ttl"):
            fleet.ttl_minutes(bad)


def test_quota_classes() -> None:
    assert fleet.quota_code("c5.4xlarge", False) == "L-1216C47A"
    assert fleet.quota_code("m5.4xlarge", True) == "L-34B43A08"
    assert fleet.quota_code("g4dn.2xlarge", False) == "L-DB2E81BA"
    assert fleet.quota_code("g5.xlarge", True) == "L-3819A6DF"
    with pytest.raises(DrfleetError, match="quotas of standard"):
        fleet.quota_code("p3.2xlarge", False)


def test_the_plan_launches_what_is_missing_spot_in_the_cheapest_zone_with_a_subnet() -> None:
    spec = FleetSpec(**(SPEC.__dict__ | {"spot": True}))
    kept = Instance("i-1", "dr1-trainer", "running", "c5.4xlarge", False, zone="us-east-1a")
    old = Instance("i-9", "dr1-w7", "running", "c5.4xlarge", True, zone="us-east-1b")
    p = fleet.plan(spec, facts(instances=[kept, old]))
    assert [(one.host.name, one.zone, one.hourly) for one in p.launch] == [
        ("dr1-w1", "us-east-1b", 0.24),  # 1c is cheaper, but has no subnet
        ("dr1-w2", "us-east-1b", 0.24),
    ]
    assert [i.id for i in p.keep] == ["i-1"] and [i.id for i in p.extra] == ["i-9"]
    assert p.total == pytest.approx(0.68 + 0.48)
    lines = list(fleet.plan_lines(p))
    assert lines[0] == "create dr1-w1: c5.4xlarge spot in us-east-1b, 0.2400 USD/h"
    assert "keep   dr1-trainer: i-1 c5.4xlarge (running), 0.6800 USD/h" in lines
    assert "leave  i-9 (dr1-w7): not in this fleet's spec" in lines
    assert lines[-1] == "the fleet costs 1.1600 USD per hour, besides its disks and traffic"


def test_a_terminated_host_is_launched_again() -> None:
    gone = Instance("i-1", "dr1-trainer", "shutting-down", "c5.4xlarge", False)
    p = fleet.plan(SPEC, facts(instances=[gone]))
    assert [one.host.name for one in p.launch] == ["dr1-trainer", "dr1-w1", "dr1-w2"]


def test_an_unknown_price_is_said_not_guessed() -> None:
    p = fleet.plan(SPEC, facts(on_demand={"c5.4xlarge": None}))
    assert p.total is None
    assert "an unknown price" in list(fleet.plan_lines(p))[-1]


def test_no_subnet_is_refused_with_the_fix() -> None:
    with pytest.raises(DrfleetError, match="create-default-vpc"):
        fleet.plan(SPEC, facts(zones=[]))


def test_refusals() -> None:
    spec = FleetSpec(**(SPEC.__dict__ | {"spot": True, "max_price": 0.1}))
    said = fleet.refusals(spec, facts())
    assert said == [
        "--max-price 0.1000 is below the spot price of c5.4xlarge in us-east-1 (the lowest now "
        "0.2000 USD/h, in us-east-1c): raise it, or drop --spot for on-demand hosts"
    ]
    quota = Quota("L-1216C47A", fleet.QUOTA_NAMES["L-1216C47A"], 32, 8)
    said = fleet.refusals(SPEC, facts(quotas={"L-1216C47A": quota}))
    assert len(said) == 1 and "need 48 vCPUs" in said[0] and "it is 32 and 8 are in use" in said[0]
    typo = FleetSpec(**(SPEC.__dict__ | {"worker_type": "c5.4xlarg"}))
    assert fleet.refusals(typo, facts())[0].startswith(
        "c5.4xlarg is not offered in us-east-1 (did you mean 'c5.4xlarge'?)"
    )
    # what runs already does not count again
    running = [Instance("i-1", "dr1-trainer", "running", "c5.4xlarge", False)]
    quota = Quota("L-1216C47A", "x", 48, 16)
    assert fleet.refusals(SPEC, facts(quotas={"L-1216C47A": quota}, instances=running)) == []


def test_the_group_opens_ssh_to_the_controller_and_the_swarm_to_members_only() -> None:
    rules = fleet.ingress("203.0.113.7/32", "sg-1")
    ssh = [r for r in rules if r.get("IpRanges")]
    assert ssh == [
        {
            "IpProtocol": "tcp",
            "FromPort": 22,
            "ToPort": 22,
            "IpRanges": [{"CidrIp": "203.0.113.7/32", "Description": "drfleet controller SSH"}],
        }
    ]
    members = {(r["IpProtocol"], r["FromPort"]) for r in rules if r.get("UserIdGroupPairs")}
    assert members == {("tcp", 2377), ("tcp", 7946), ("udp", 7946), ("udp", 4789), ("50", -1)}
    assert all(r["UserIdGroupPairs"][0]["GroupId"] == "sg-1" for r in rules if r not in ssh)


def test_user_data_pins_the_host_key_and_ends_the_host_at_its_ttl() -> None:
    private, public = hostkey.generate("dr1-w1")
    spec = FleetSpec(**(SPEC.__dict__ | {"ttl_minutes": 480}))
    text = fleet.user_data(spec, (private, public))
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert doc["ssh_keys"]["ed25519_private"].strip() == private.strip()
    assert doc["ssh_keys"]["ed25519_public"] == public
    assert doc["ssh_genkeytypes"] == ["ed25519"] and doc["ssh_deletekeys"] is True
    assert doc["power_state"] == {
        "mode": "poweroff",
        "delay": 480,
        "message": "drfleet --ttl reached",
        "condition": True,
    }
    assert "power_state" not in (yaml.safe_load(fleet.user_data(SPEC, None)) or {})


def test_the_role_reaches_the_bucket_alone() -> None:
    policy = fleet.s3_policy("my-bucket")
    assert {s["Resource"] for s in policy["Statement"]} == {
        "arn:aws:s3:::my-bucket",
        "arn:aws:s3:::my-bucket/*",
    }


def test_the_inventory_written_loads_and_keeps_the_spec(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from drfleet.hosts import inventory

    running = [
        Instance("i-1", "dr1-trainer", "running", "c5.4xlarge", False, "198.51.100.1", "10.0.0.4"),
        Instance("i-2", "dr1-w1", "running", "x9.huge", True, "198.51.100.2", "10.0.0.5"),
        Instance("i-3", "other", "running", "c5.4xlarge", False, "198.51.100.3", "10.0.0.6"),
    ]
    text = fleetfiles.inventory_text(SPEC, running, {"x9.huge": 12}, "/k", "/kh", False)
    path = tmp_path / "local.yml"
    path.write_text(text)
    inv = inventory.load(path)
    assert list(inv.hosts) == ["dr1-trainer", "dr1-w1"]
    assert inv.hosts["dr1-trainer"].address == "198.51.100.1"
    assert inv.hosts["dr1-trainer"].ssh_user == "ubuntu" and inv.hosts["dr1-w1"].become
    assert inv.hosts["dr1-w1"].vcpus == 12 and inv.hosts["dr1-w1"].known_hosts == "/kh"
    assert fleetfiles.saved_spec(path) == SPEC.document() | {"private_addresses": False}
    path.write_text(text.replace("  vars:\n", "  vars:\n    docker_group: true\n", 1))
    assert fleetfiles.kept_vars(path) == {"docker_group": True}
    private = fleetfiles.inventory_text(SPEC, running, {}, "/k", "/kh", True)
    assert "10.0.0.4" in private and "198.51.100.1" not in private


def test_up_never_overwrites_an_inventory_of_the_users(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "local.yml"
    path.write_text("all:\n  hosts:\n    mine: {address: 10.1.1.1}\n")
    with pytest.raises(DrfleetError, match="an inventory of your own"):
        fleetfiles.claim(path, "default")
    path.write_text("default\n")
    said = fleetfiles.claim(path, "default")
    assert said and (tmp_path / "local.yml.bak").read_text() == "default\n"
    assert fleetfiles.claim(tmp_path / "absent.yml", "default") is None


def test_known_hosts_lines() -> None:
    _, public = hostkey.generate("c")
    line = hostkey.known_hosts_lines({"10.0.0.4": public})[0]
    assert line.startswith("10.0.0.4 ssh-ed25519 ") and not line.endswith(" c")


def test_a_spot_trainer_holding_minio_is_warned_about() -> None:
    spot_trainer = dataclasses.replace(SPEC, spot=True, trainer_spot=True)
    (said,) = fleet.cautions(spot_trainer, "local")
    assert "loses the model" in said and "--trainer-spot" in said
    assert fleet.cautions(spot_trainer, "aws") == []
    assert fleet.cautions(dataclasses.replace(SPEC, spot=True), "local") == []

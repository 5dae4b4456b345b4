"""`drfleet up` and `drfleet down`: a fleet of Ubuntu EC2 hosts from an AWS account, and its
end. up: check, plan, show the cost, create what is missing, write the inventory, wait for
SSH. down: end what up created (by its tag), say what remains."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from invoke.exceptions import Exit

from drfleet.commandline.command import command, show
from drfleet.errors import DrfleetError
from drfleet.ui import Board

UP_HELP = {
    "name": "the fleet's name, in its hosts' names and tags (default: drfleet)",
    "region": "AWS region (default: the profile's, or AWS_REGION)",
    "workers": "hosts for robomaker workers besides the trainer's (default 2)",
    "trainer_type": "the trainer's instance type (default c5.4xlarge; g4dn.2xlarge for a GPU)",
    "worker_type": "the worker hosts' instance type (default c5.4xlarge)",
    "spot": "worker hosts on spot (cheaper; AWS may take one back with two minutes' notice)",
    "trainer_spot": "the trainer's host on spot too (default: on-demand)",
    "max_price": "the most a spot host may cost, USD per hour (default: the on-demand price)",
    "ubuntu": "24.04 (default) or 22.04: Canonical's image, found through its SSM parameter",
    "ami": "an image of your own instead (its default user must be ubuntu)",
    "ssh_from": "your controller's public address or network: the only source SSH is open to",
    "ttl": "every new host ends itself after this long (90m, 8h, 2d), controller or not",
    "disk_gb": "the root disk of each host, GB (default 100; the DeepRacer images take ~25)",
    "subnet": "launch in this subnet (default: the default VPC's, in the cheapest zone)",
    "key": "the SSH key to log in with (default ~/.ssh/drfleet-NAME, made if missing)",
    "private": "write the hosts' private addresses (a controller inside the VPC)",
    "dry_run": "show what would be created and what it costs; create nothing",
    "yes": "create without asking (needed without a terminal)",
    "wait": "wait until every host's SSH answers (default; --no-wait returns at `running`)",
}


def _inventory_path(inventory: str | None, env_dir: str | None) -> Path:
    from drfleet.hosts import inventory as inventory_mod

    if inventory:
        return Path(inventory)
    if os.environ.get("DRFLEET_INVENTORY"):
        return Path(os.environ["DRFLEET_INVENTORY"])
    return Path(env_dir or ".") / inventory_mod.DEFAULT_INVENTORY


def _storage(env_dir: str | None) -> str:
    """DR_CLOUD of system.env (DRfC's default, local, without one)."""
    from drfleet.drfc import envfile

    path = Path(env_dir or ".") / "system.env"
    if not path.is_file():
        return "local"
    return str(dict(envfile.load(path).values).get("DR_CLOUD") or "local").lower()


def _bucket(env_dir: str | None) -> str | None:
    """DR_CLOUD=aws in system.env: the run's bucket, which the hosts' role may use."""
    from drfleet.drfc import envfile

    if _storage(env_dir) != "aws":
        return None
    path = Path(env_dir or ".") / "system.env"
    values = dict(envfile.load(path).values)
    bucket = values.get("DR_LOCAL_S3_BUCKET")
    if not bucket:
        raise DrfleetError(
            "DR_CLOUD=aws but no DR_LOCAL_S3_BUCKET", where=str(path), fix="name the run's bucket"
        )
    return bucket


def _confirm(json: bool, said: list[str], no_terminal: str, fix: str, declined: str) -> None:
    """Asks on the terminal (the last line is the question); without one, or with --json,
    refuses with the fix (--yes)."""
    if json or not sys.stdin.isatty():
        raise DrfleetError(no_terminal, fix=fix)
    for line in said[:-1]:
        print(line)
    if input(f"{said[-1]} [y/N] ").strip().lower() not in ("y", "yes"):
        raise Exit(declined, code=1)


def _number(flag: str, value: Any, kind: type) -> Any:
    """A number flag without a default: invoke hands it over as text."""
    if value is None:
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise DrfleetError(f"--{flag} {value!r} is not a number") from None


@command(**UP_HELP)
def up(
    c: Any,
    name: str | None = None,
    region: str | None = None,
    workers: str | None = None,
    trainer_type: str | None = None,
    worker_type: str | None = None,
    spot: bool = False,
    trainer_spot: bool = False,
    max_price: str | None = None,
    ubuntu: str | None = None,
    ami: str | None = None,
    ssh_from: str | None = None,
    ttl: str | None = None,
    disk_gb: str | None = None,
    subnet: str | None = None,
    key: str | None = None,
    private: bool = False,
    dry_run: bool = False,
    yes: bool = False,
    wait: bool = True,
    inventory: str | None = None,
    env_dir: str | None = None,
    json: bool = False,
    verbose: int = 0,
) -> None:
    """Create the fleet's EC2 hosts (Ubuntu, on-demand or spot) where they are missing, after
    showing what it creates and its cost per hour; write the inventory; wait for SSH."""
    from drfleet.cloud import account, ec2, fleet, fleetfiles, reach
    from drfleet.cloud.results import Up
    from drfleet.hosts import inventory as inventory_mod

    path = _inventory_path(inventory, env_dir)
    saved = fleetfiles.saved_spec(path) or {}
    s = account.session(region or saved.get("region"))
    given: dict[str, Any] = {
        "name": name,
        "region": region or s.region_name,
        "workers": _number("workers", workers, int),
        "trainer_type": trainer_type,
        "worker_type": worker_type,
        "spot": spot or None,
        "trainer_spot": trainer_spot or None,
        "max_price": _number("max-price", max_price, float),
        "ubuntu": ubuntu,
        "ami": ami,
        "ssh_from": ssh_from,
        "ttl_minutes": fleet.ttl_minutes(ttl) if ttl else None,
        "disk_gb": _number("disk-gb", disk_gb, int),
        "subnet": subnet,
        "bucket": _bucket(env_dir),
    }
    if saved and name and name != saved.get("name"):
        raise DrfleetError(
            f"{path} is fleet {saved.get('name')}'s inventory, not {name}'s",
            fix="pass --inventory with another file for another fleet",
        )
    spec = fleet.spec_from(saved, given)
    private = private or bool(saved.get("private_addresses"))
    account.identity(s)  # wrong or expired keys: said here, before anything else
    facts = account.gather(s, spec)
    refused = fleet.refusals(spec, facts)
    if refused:
        raise DrfleetError("; ".join(refused) if len(refused) > 1 else refused[0])
    plan = fleet.plan(spec, facts)
    result = Up(plan, dry_run, warnings=fleet.cautions(spec, _storage(env_dir)))
    if dry_run:
        show(result, json)
        return
    said = fleetfiles.claim(path, inventory_mod._EMBEDDED_DEFAULT.read_text())
    if plan.launch and not yes:
        _confirm(
            json,
            [*fleet.plan_lines(plan), *result.warnings, "create them?"],
            f"up would create {len(plan.launch)} hosts and there is no terminal to ask",
            "look with --dry-run, then pass --yes",
            "nothing was created",
        )
    key_file = Path(os.path.expanduser(key or f"~/.ssh/drfleet-{spec.name}"))
    public_key = fleetfiles.ssh_key(key_file)
    names = [h.name for h in spec.hosts()]
    with Board(names, title="up", quiet=json) as board:
        launched = ec2.launch(s, plan, public_key, board.update)
        ours = {h.name for h in spec.hosts()}
        running = [i for i in launched.instances if i.host in ours]
        keys = {**account.host_keys(s.client("ec2"), spec.name), **launched.host_keys}
        known = {}
        for i in running:
            addr = fleetfiles.address(i, private)
            if addr and i.host in keys:
                known[addr] = keys[i.host]
        known_path = path.with_name(f"{path.stem}.known_hosts")
        text = fleetfiles.inventory_text(
            spec,
            running,
            facts.vcpus,
            str(key_file),
            str(known_path.resolve()),
            private,
            fleetfiles.kept_vars(path),
        )
        fleetfiles.write(path, text, known_path, known)
        unreachable: list[str] = []
        if wait:
            addresses = {i.host: fleetfiles.address(i, private) or "" for i in running}
            unreachable = reach.wait(addresses, board.update)
    result.inventory = str(path)
    result.hosts = running
    result.created = [one.host.name for one in plan.launch]
    result.unreachable = unreachable
    result.said = [said] if said else []
    result.failed = bool(unreachable)
    show(result, json)


@command(
    name="the fleet to end (default: the one the inventory was written for)",
    region="its region (default: the inventory's)",
    yes="end it without asking (needed without a terminal)",
)
def down(
    c: Any,
    name: str | None = None,
    region: str | None = None,
    yes: bool = False,
    inventory: str | None = None,
    env_dir: str | None = None,
    json: bool = False,
    verbose: int = 0,
) -> None:
    """End what `drfleet up` created for a fleet (its instances, disks, security group, key
    pair, role), only that, and say what remains."""
    from drfleet.cloud import account, ec2, fleetfiles
    from drfleet.cloud.results import Down

    path = _inventory_path(inventory, env_dir)
    saved = fleetfiles.saved_spec(path) or {}
    name = name or saved.get("name")
    if not name:
        raise DrfleetError(
            f"no fleet named, and {path} is not an inventory `drfleet up` wrote",
            fix="pass --name (and --region), or --inventory with the fleet's inventory",
        )
    s = account.session(region or saved.get("region"))
    if not s.region_name:
        raise DrfleetError("no AWS region named", fix="pass --region")
    account.identity(s)
    if not yes:
        _confirm(
            json,
            [f"end fleet {name} in {s.region_name}?"],
            f"down ends every instance of fleet {name} in {s.region_name}; there is no "
            "terminal to ask",
            "pass --yes",
            "nothing was ended",
        )
    hosts = [i.host or i.id for i in account.instances(s.client("ec2"), name)] or [name]
    with Board(hosts, title="down", quiet=json) as board:
        removed = ec2.down(s, name, board.update)
    remains = ec2.remains(s, name)
    dropped = None
    if saved.get("name") == name and not remains:
        known = path.with_name(f"{path.stem}.known_hosts")
        path.unlink(missing_ok=True)
        known.unlink(missing_ok=True)
        dropped = str(path)
    show(
        Down(name, s.region_name, removed.__dict__, remains, dropped, failed=bool(remains)),
        json,
    )


TASKS = (up, down)

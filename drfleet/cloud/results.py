"""What `drfleet up` and `drfleet down` return: typed results the command line renders as
lines or as their --json document (docs/schemas/up.json, down.json). Pure."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from drfleet.cloud import fleet
from drfleet.cloud.fleet import Instance, Plan


@dataclass
class Up:
    plan: Plan
    dry_run: bool
    inventory: str | None = None
    hosts: list[Instance] = field(default_factory=list)
    created: list[str] = field(default_factory=list)  # host names launched by this run
    unreachable: list[str] = field(default_factory=list)  # no SSH within the wait
    said: list[str] = field(default_factory=list)  # notes (a kept .bak, ...)
    warnings: list[str] = field(default_factory=list)  # fleet.cautions
    failed: bool = False

    def as_json(self) -> dict[str, Any]:
        p = self.plan
        return {
            "fleet": p.spec.name,
            "region": p.spec.region,
            "dry_run": self.dry_run,
            "plan": {
                "create": [
                    {
                        "host": one.host.name,
                        "instance_type": one.host.instance_type,
                        "market": "spot" if one.host.spot else "on-demand",
                        "zone": one.zone,
                        "usd_per_hour": one.hourly,
                    }
                    for one in p.launch
                ],
                "keep": [i.host for i in p.keep],
                "leave": [i.id for i in p.extra],
            },
            "usd_per_hour": p.total,
            "inventory": self.inventory,
            "hosts": [
                {
                    "host": i.host,
                    "id": i.id,
                    "instance_type": i.instance_type,
                    "market": "spot" if i.spot else "on-demand",
                    "public_ip": i.public_ip,
                    "private_ip": i.private_ip,
                    "zone": i.zone,
                }
                for i in self.hosts
            ],
            "created": self.created,
            "unreachable": self.unreachable,
            "warnings": self.warnings,
        }

    def lines(self) -> Iterator[str]:
        yield from fleet.plan_lines(self.plan)
        yield from self.warnings
        if self.dry_run:
            yield "nothing was created (--dry-run)"
            return
        yield from self.said
        for i in self.hosts:
            yield f"{i.host}: {i.id} {i.instance_type} {i.public_ip or i.private_ip}"
        if self.unreachable:
            yield f"SSH did not answer on {', '.join(self.unreachable)}: `drfleet up` waits again"
        if self.inventory:
            yield f"inventory: {self.inventory}"
            yield f"next: drfleet provision --inventory {self.inventory}"


@dataclass
class Down:
    fleet: str
    region: str
    removed: dict[str, list[str]]
    remains: list[str]
    inventory: str | None = None
    failed: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "fleet": self.fleet,
            "region": self.region,
            "removed": self.removed,
            "remains": self.remains,
            "inventory": self.inventory,
        }

    def lines(self) -> Iterator[str]:
        for kind, items in self.removed.items():
            for item in items:
                yield f"removed {kind.rstrip('s').replace('_', ' ')} {item}"
        if not any(self.removed.values()):
            yield f"fleet {self.fleet} in {self.region} had nothing left to remove"
        if self.inventory:
            yield f"removed the inventory {self.inventory} and its known_hosts"
        if self.remains:
            yield "still there (and may bill):"
            for r in self.remains:
                yield f"  {r}"
        else:
            yield f"nothing of fleet {self.fleet} remains in {self.region}"

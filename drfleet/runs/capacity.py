"""What each host can take: declared in the inventory, or learnt from its facts (asked in
parallel). The one place planning's inputs touch the wire; planning itself takes the result."""

from __future__ import annotations

from typing import Any

from drfleet.errors import DrfleetError
from drfleet.hosts import facts as facts_mod
from drfleet.hosts.hostfacts import Facts
from drfleet.hosts.inventory import Inventory
from drfleet.hosts.remote import Options
from drfleet.runs.placement import Capacity, capacity


def of_hosts(
    inv: Inventory, options: Options, skip: frozenset[str] = frozenset()
) -> dict[str, Capacity]:
    """From the inventory where it declares capacity; otherwise asks the hosts (in parallel).
    Hosts in skip (known to be down) are left out."""
    hosts = [h for h in inv.hosts.values() if h.roles and h.name not in skip]
    if not hosts:
        raise DrfleetError(
            "no host of the inventory has a role",
            where=inv.path,
            fix="give hosts roles: [trainer, robomaker]",
        )
    unknown = [h for h in hosts if h.declared("vcpus") is None]
    found: dict[str, dict[str, Any]] = {}
    if unknown:
        for o in facts_mod.gather_all(unknown, options):
            if not o.ok:
                raise DrfleetError(
                    f"cannot learn its capacity: {o.error.message if o.error else ''}",
                    where=o.host.name,
                    fix="make it reachable, or declare vcpus in the inventory",
                )
            found[o.host.name] = o.value or {}
    return {h.name: capacity(h, Facts(found[h.name]) if h.name in found else None) for h in hosts}

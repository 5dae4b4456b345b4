"""Facts: what each host is, gathered in ONE remote command per host that prints JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from drfleet.errors import DrfleetError, host_fields
from drfleet.hosts import probe
from drfleet.hosts.inventory import Host
from drfleet.hosts.remote import Options, Outcome, Session, fan_out, session
from drfleet.shell import Command, Raw, cmd
from drfleet.ui import Board

PROBE_SOURCE = Path(probe.__file__).read_text()
_NO_PYTHON = '{"probe": 0, "error": "python3 not found"}'


def probe_command(params: dict[str, Any] | None = None) -> Command:
    """`python3 - <params>` reading the probe from stdin (so sudo's log shows one short line,
    not the probe's source), or a JSON error when the host has no python3."""
    check = Command(
        (Raw("command -v python3 >/dev/null 2>&1 || { echo"), _NO_PYTHON, Raw("; exit 0; }"))
    )
    return check.then(cmd("python3", "-", json.dumps(params or {}, separators=(",", ":"))))


def gather(
    sess: Session, params: dict[str, Any] | None = None, become: bool | None = None
) -> dict[str, Any]:
    result = sess.run(
        probe_command(params), stdin=PROBE_SOURCE, timeout=120, task="gather facts", become=become
    )
    try:
        facts: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise DrfleetError(
            "the fact probe printed no JSON: " + (result.tail() or "(nothing)"),
            where=sess.host.name,
        ) from None
    if facts.get("probe") == 0:
        raise DrfleetError(
            "python3 is not installed on the host, and drfleet's probe needs it",
            where=sess.host.name,
            fix="install it (apt-get install -y python3); Debian 12 and Ubuntu "
            "22.04+ images normally have it",
        )
    return facts


def gather_all(
    hosts: list[Host], options: Options, board: Board | None = None
) -> list[Outcome[dict[str, Any]]]:
    if board:
        options = dataclasses.replace(options, notice=board.update)

    def one(host: Host) -> dict[str, Any]:
        if board:
            board.update(host.name, "connecting")
        with session(host, options) as sess:
            if board:
                board.update(host.name, "gathering facts")
            facts = gather(sess)
        if board:
            board.done(host.name, "ok")
        return facts

    outcomes = fan_out(hosts, one, limit=options.limit)
    if board:
        for o in outcomes:
            if o.error:
                board.done(o.host.name, "unreachable" if o.unreachable else "failed", ok=False)
    return outcomes


def report(outcomes: list[Outcome[dict[str, Any]]]) -> dict[str, Any]:
    """The `drfleet facts --json` document."""
    hosts: dict[str, Any] = {}
    for o in outcomes:
        entry: dict[str, Any] = {"address": o.host.address, "roles": list(o.host.roles)}
        if o.ok and o.value is not None:
            entry.update(host_fields(True, None), **o.value)
        else:
            entry.update(host_fields(not o.unreachable, o.error or "failed"))
        entry["elapsed_s"] = round(o.elapsed, 3)
        hosts[o.host.name] = entry
    return {"hosts": hosts}

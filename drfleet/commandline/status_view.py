"""What `drfleet status` shows: the table of hosts and containers, then what the run needs
said (dropped, lost, still to be told), as rich renderables for a print or a live display."""

from __future__ import annotations

import re
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from drfleet.runs.observe import TRAINER_LOST, FleetReport


def view(report: FleetReport) -> Group:
    return Group(_table(report), *_notice_lines(report), *_run_lines(report.run))


def _notice_lines(report: FleetReport) -> list[Text]:
    """EC2's notices: an interruption is days of work at stake, said in red."""
    out = []
    for host, r in report.hosts.items():
        ec2 = r.status.agent.ec2 if r.status else None
        if not ec2:
            continue
        notice = r.status.agent.interruption if r.status else None
        if notice:
            out.append(
                Text(
                    f"{host}: EC2 spot interruption notice: {notice['action']} at {notice['time']}",
                    style="red",
                )
            )
        elif ec2.get("rebalance"):
            out.append(
                Text(
                    f"{host}: EC2 rebalance recommendation since {ec2['rebalance']} (an "
                    "interruption may follow)",
                    style="yellow",
                )
            )
        elif ec2.get("error"):
            out.append(
                Text(f"{host}: cannot watch for EC2 notices: {ec2['error']}", style="yellow")
            )
    return out


def asking(hosts: list[str]) -> Table:
    """What status --watch draws at once, while the hosts are asked the first time."""
    table = _columns()
    for host in hosts:
        table.add_row(Text(host), "", "", "[dim]asking…[/]", "", "", "", "", "")
    return table


def _columns() -> Table:
    return Table(
        "host", "stack", "container", "state", "restarts", "exit", "started", "ports", "last error"
    )


def _table(report: FleetReport) -> Table:
    table = _columns()
    table.columns[2].overflow = "fold"  # a narrow terminal wraps names, never cuts them
    table.columns[8].overflow = "fold"  # and a host's reason with what to do, whole
    for host, r in report.hosts.items():
        # every string a host reported is Text: never read as markup
        if r.status is None:
            state = "[red]unreachable[/]" if not r.reachable else "[red]error[/]"
            why = Text(re.sub(r"^\S+ \([^)]*\): ", "", r.error, count=1))  # the host is named
            if r.fix:
                why.append(f"\nfix: {r.fix}", style="dim")
            table.add_row(Text(host), "", "", state, "", "", "", "", why)
            continue
        if not r.status.agent.running:
            table.add_row(Text(host), "", "(agent)", "[red]not running[/]", "", "", "", "", "")
        for ctr in r.status.containers:
            table.add_row(
                Text(host),
                Text(ctr.stack),
                Text(ctr.name),
                Text(str(ctr.state.value)),
                str(ctr.restarts),
                str(ctr.last_exit_code or ""),
                Text(str(ctr.started_at or "")),
                ",".join(str(h) for h in ctr.ports.values()),
                Text(ctr.last_error[:60]),
            )
    return table


def _run_lines(run: dict[str, Any] | None) -> list[Text]:
    out: list[Text] = []
    if not run:
        return out
    for host, names in run["dropped"].items():
        out.append(
            Text(
                f"{host}: its slots had moved while it was away; "
                f"dropped {', '.join(names) or 'nothing'}",
                style="",
            )
        )
    if run["trainer"]["state"] == "lost":
        out.append(
            Text(
                f"the trainer host {run['trainer']['host']} is unreachable: training is stalled "
                f"until it is back; {TRAINER_LOST}",
                style="red",
            )
        )
    for host, slots in run["lost"].items():
        out.append(
            Text(
                f"{host} is unreachable: slots {', '.join(map(str, slots))} are lost; "
                "`drfleet train --rebalance` moves them to hosts with room",
                style="red",
            )
        )
    for host, n in run.get("leaving", {}).items():
        if n["trainer"]:
            out.append(
                Text(
                    f"{host} runs the trainer and EC2 will {n['action']} it at {n['time']}: "
                    f"training stops then; {TRAINER_LOST}",
                    style="red",
                )
            )
        elif n["slots"]:
            out.append(
                Text(
                    f"{host} is leaving ({n['action']} at {n['time']}): slots "
                    f"{', '.join(map(str, n['slots']))} move with `drfleet status --converge` "
                    "or `drfleet train --rebalance`",
                    style="red",
                )
            )
    drained = run.get("drained")
    if drained and "error" in drained:
        out.append(Text(f"nothing moved: {drained['error']}", style="red"))
        if drained.get("fix"):
            out.append(Text(f"  fix: {drained['fix']}", style="dim"))
    elif drained:
        for slot, m in drained["moved"].items():
            out.append(Text(f"slot {slot} moved from {m['from']} (leaving) to {m['to']}"))
    out += _progress_lines(run.get("progress"))
    for host in run["fence_pending"]:
        out.append(
            Text(
                f"{host} is still to be told that its slots moved (it may still run them): "
                "`drfleet status --converge` or `drfleet train --rebalance` tells it once "
                "reachable",
                style="yellow",
            )
        )
    return out


def _progress_lines(progress: dict[str, Any] | None) -> list[Text]:
    """Iterations saved, and per worker its episodes and its latest iteration's means."""
    if not progress:
        return []
    if "error" in progress:
        return [Text(f"training progress unknown: {progress['error']}", style="yellow")]
    lines = [Text(f"training: {progress['iterations']} iterations saved")]
    for slot, w in progress["workers"].items():
        if w["reward"] is None:
            lines.append(Text(f"  worker {slot}: no episode yet"))
            continue
        lines.append(
            Text(
                f"  worker {slot}: {w['episodes']} episodes, latest reward {w['reward']:g}, "
                f"progress {w['progress']:g}%"
            )
        )
    return lines

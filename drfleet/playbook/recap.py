"""The end of a run, for people: a recap per host, then what failed, and in check mode (or
with --diff) what would change or changed, with diffs."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from drfleet import ui
from drfleet.playbook.model import PlayReport


def show(reports: dict[str, PlayReport], check: bool, diff: bool = False) -> None:
    console = ui.console()
    if check or diff:
        for name, r in reports.items():
            for t in r.tasks:
                if t.status == "changed":
                    console.print(f"[yellow]{escape(name)}[/]: {escape(t.name)}: {escape(t.msg)}")
                    for c in t.commands:
                        console.print(f"    $ {escape(c[:300])}", style="dim")
                    if t.diff:
                        console.print(escape(t.diff.rstrip()), style="cyan")
    table = Table(
        "host",
        "ok",
        "changed",
        "failed",
        "skipped",
        "unreachable",
        "seconds",
        title="would change (check mode)" if check else "recap",
    )
    for name, r in reports.items():
        table.add_row(
            name,
            str(r.count("ok")),
            str(r.count("changed")),
            str(r.count("failed")),
            str(r.count("skipped")),
            "yes" if r.unreachable else "",
            f"{r.elapsed:.1f}",
            style="red" if r.failed else None,
        )
    console.print(table)
    for r in reports.values():
        if r.unreachable and r.error:
            console.print(f"[red]{escape(r.error)}[/]")
            if r.fix:
                console.print(f"  fix: {escape(r.fix)}")
        for t in r.tasks:
            if t.status == "failed":
                console.print(f"[red]{escape(t.msg)}[/]")

"""What a host reports reaches the terminal as text, never as Rich markup: a `[/]` in an
error broke the table (MarkupError), and a crafted one could restyle or hide what is shown."""

from __future__ import annotations

import io

from drfleet_agent.contract import HostStatus
from rich.console import Console

from drfleet.commandline.status_view import view
from drfleet.runs.observe import FleetReport, HostReport
from drfleet.ui import Board

HOSTILE = "[/] [bold red]fake[/bold red] [link=http://evil.example]click[/link]"


def _text(renderable: object) -> str:
    out = io.StringIO()
    Console(file=out, width=400, color_system=None).print(renderable)
    return out.getvalue()


def test_status_shows_host_reported_strings_as_they_are() -> None:
    status = HostStatus.parse(
        {
            "agent": {"running": True},
            "containers": [
                {
                    "name": "drfleet-robomaker-1",
                    "state": "crashed",
                    "last_error": HOSTILE,
                    "stack": "[b]x[/b]",
                }
            ],
        }
    )
    report = FleetReport(
        {
            "h1": HostReport("h1", True, status),
            "h2": HostReport("h2", False, None, error=HOSTILE),
        }
    )
    shown = _text(view(report))
    assert "[/] [bold red]fake[/bold red]" in shown  # h2's error, whole
    assert shown.count("[bold red]fake") == 2 and "[b]x[/b]" in shown


def test_progress_lines_are_text() -> None:
    out = io.StringIO()
    board = Board(["h1"], stream=out)
    board.rows["h1"] = ("fail", HOSTILE, 0.0)
    assert "[/] [bold red]fake[/bold red]" in _text(board._render())


def test_status_watch_draws_every_host_before_the_first_answer() -> None:
    from drfleet.commandline.status_view import asking

    shown = _text(asking(["h1", "[b]h2[/b]"]))
    assert "h1" in shown and "[b]h2[/b]" in shown and shown.count("asking…") == 2


def test_a_waiting_hosts_time_counts_up_and_a_finished_one_stays() -> None:
    """Drawn from the rows at each refresh: a host still waiting showed 0.0s for as long as
    it waited (21 s against unreachable hosts)."""
    import re
    import time

    board = Board(["h1", "h2"], stream=io.StringIO())
    board.done("h2", "ok")
    first = _text(board._render())
    time.sleep(0.25)
    second = _text(board._render())

    def secs(text: str, host: str) -> float:
        m = re.search(rf"{host}\s+\S+\s+([\d.]+)s", text)
        assert m, text
        return float(m.group(1))

    assert secs(second, "h1") >= secs(first, "h1") + 0.2
    assert secs(second, "h2") == secs(first, "h2")


def test_status_says_a_leaving_host_its_slots_and_why_nothing_moved() -> None:
    notice = {"action": "terminate", "time": "2026-12-06T01:02:03Z"}
    status = HostStatus.parse(
        {"agent": {"running": True, "ec2": {"interruption": notice}}, "containers": []}
    )
    run = {
        "dropped": {},
        "trainer": {"host": "t", "state": "ok"},
        "lost": {},
        "fence_pending": [],
        "leaving": {"w1": {**notice, "slots": [2, 3], "trainer": False}},
        "drained": {"error": "no capacity left for the 2 slots", "fix": "add 4 more vCPUs"},
    }
    text = _text(view(FleetReport({"w1": HostReport("w1", True, status)}, run)))
    assert "w1: EC2 spot interruption notice: terminate at 2026-12-06T01:02:03Z" in text
    assert "w1 is leaving (terminate at 2026-12-06T01:02:03Z): slots 2, 3 move with" in text
    assert "nothing moved: no capacity left for the 2 slots" in text
    assert "fix: add 4 more vCPUs" in text

"""What people see while work runs: one live line per host on a terminal, plain lines
otherwise, nothing at all with --json (the JSON document is the only output then)."""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text


class Board:
    """Per-host status lines. Thread-safe; a no-op when quiet."""

    def __init__(
        self,
        hosts: list[str],
        *,
        title: str = "",
        quiet: bool = False,
        stream: IO[str] | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.title = title
        self.rows: dict[str, tuple[str, str, float]] = {
            h: ("", "waiting", time.monotonic()) for h in hosts
        }
        self.lock = threading.RLock()
        self.ended: dict[str, float] = {}  # when each host's line became final
        self.console = Console(file=self.stream, stderr=self.stream is sys.stderr)
        self.live: Live | None = None
        self.printed: dict[str, float] = {}  # when each host's progress was last printed

    def __enter__(self) -> Board:
        if not self.quiet and self.console.is_terminal:
            # drawn from the rows at each refresh, so a host's time counts up while it waits
            self.live = Live(
                console=self.console,
                refresh_per_second=4,
                transient=False,
                get_renderable=self._render,
            )
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live:
            self.live.refresh()
            self.live.__exit__(None, None, None)

    def update(self, host: str, text: str) -> None:
        self._set(host, "", text)

    def progress(self, host: str, text: str, every: float = 2.0) -> None:
        """Progress of a long copy: the host's live line on a terminal; otherwise a plain
        line at most every `every` seconds per host, so a log shows the work moving."""
        self._set(host, "", text)
        if self.quiet or self.live:
            return
        with self.lock:
            now = time.monotonic()
            if now - self.printed.get(host, 0.0) < every:
                return
            self.printed[host] = now
            self.stream.write(f"{host}: {text}\n")
            self.stream.flush()

    def done(self, host: str, text: str, *, ok: bool = True) -> None:
        self._set(host, "ok" if ok else "fail", text, final=True)

    def _set(self, host: str, mark: str, text: str, final: bool = False) -> None:
        with self.lock:
            started = self.rows.get(host, ("", "", time.monotonic()))[2]
            self.rows[host] = (mark, text, started)
            if final:
                self.ended[host] = time.monotonic()
            if self.quiet:
                return
            if self.live:
                self.live.refresh()
            elif final:
                elapsed = time.monotonic() - started
                self.stream.write(f"{host}: {text} ({elapsed:.1f} s)\n")
                self.stream.flush()

    def _render(self) -> Table:
        table = Table.grid(padding=(0, 2))
        with self.lock:
            rows = list(self.rows.items())
            ended = dict(self.ended)
        for host, (mark, text, started) in rows:
            now = ended.get(host, time.monotonic())
            icon = {"ok": "[green]✔[/]", "fail": "[red]✘[/]"}.get(mark, "[yellow]…[/]")
            # what a host reports is text, never markup ("[/]" in an error would break the
            # display, and a crafted one restyle it)
            table.add_row(
                icon, Text(host, style="bold"), Text(text), f"[dim]{now - started:.1f}s[/]"
            )
        return table


def console() -> Console:
    """stdout for tables: the terminal's width, or wide enough never to cut names and
    errors when the output goes to a file or a pipe (rich would assume 80 columns)."""
    return Console() if sys.stdout.isatty() else Console(width=240)

"""Bytes, rate and time left for long copies: images pulled on a host (from dockerd's pull
events) or streamed from the controller or a peer (counted as they pass). Pure, but for the
clock the caller passes in."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def size(n: float) -> str:
    for unit in UNITS:
        if abs(n) < 1024 or unit == UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # not reached


def clock(seconds: float) -> str:
    s = int(seconds)
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


@dataclass
class Meter:
    """How much of a copy is done; total is None when nobody knows it beforehand."""

    total: int | None = None
    done: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self, now: float | None = None) -> str:
        """'412.0 MiB of 1.9 GiB, 52.3 MiB/s, 0:27 left' (what is known of it)."""
        elapsed = max(1e-6, (now if now is not None else time.monotonic()) - self.started)
        rate = self.done / elapsed
        text = size(self.done) + (f" of {size(self.total)}" if self.total else "")
        text += f", {size(rate)}/s"
        if self.total and rate > 0 and self.done < self.total:
            text += f", {clock((self.total - self.done) / rate)} left"
        return text


def metered(
    chunks: Iterable[bytes],
    meter: Meter,
    tick: Callable[[str], None],
    every: float = 0.5,
) -> Iterator[bytes]:
    """Passes chunks through, counting them, and calls tick(meter.line()) now and then."""
    last = 0.0
    for chunk in chunks:
        meter.done += len(chunk)
        now = time.monotonic()
        if now - last >= every:
            last = now
            tick(meter.line(now))
        yield chunk
    tick(meter.line())


class Pull:
    """dockerd's pull events (POST /images/create, one JSON object a line) summed over layers:
    each layer's download progress, and its size once known."""

    def __init__(self) -> None:
        self.layers: dict[str, tuple[int, int]] = {}  # id -> (current, total) downloaded
        self.meter = Meter()

    def feed(self, event: dict[str, Any]) -> str | None:
        """Takes one event; an error event's message is returned (the pull failed)."""
        if event.get("error"):
            return str(event.get("errorDetail", {}).get("message") or event["error"])
        if "message" in event and "status" not in event:  # the API refused the pull itself
            return str(event["message"])
        layer, status = str(event.get("id") or ""), str(event.get("status") or "")
        detail = event.get("progressDetail") or {}
        if layer and status == "Downloading" and detail.get("total"):
            self.layers[layer] = (int(detail.get("current") or 0), int(detail["total"]))
        elif layer and status in ("Download complete", "Pull complete", "Already exists"):
            _, total = self.layers.get(layer, (0, 0))
            self.layers[layer] = (total, total)
        self.meter.done = sum(c for c, _ in self.layers.values())
        self.meter.total = sum(t for _, t in self.layers.values()) or None
        return None

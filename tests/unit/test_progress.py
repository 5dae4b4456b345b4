"""Bytes, rate and time left for image copies (pure)."""

from __future__ import annotations

from drfleet.progress import Meter, Pull, metered


def test_a_meter_says_bytes_of_total_rate_and_time_left() -> None:
    m = Meter(total=2 * 1024**3, done=512 * 1024**2, started=100.0)
    assert m.line(now=110.0) == "512.0 MiB of 2.0 GiB, 51.2 MiB/s, 0:30 left"
    assert Meter(done=3 * 1024, started=0.0).line(now=1.0) == "3.0 KiB, 3.0 KiB/s"


def test_metered_passes_every_byte_and_ticks() -> None:
    seen: list[str] = []
    m = Meter(total=30)
    out = b"".join(metered([b"a" * 10, b"b" * 10, b"c" * 10], m, seen.append, every=0))
    assert out == b"a" * 10 + b"b" * 10 + b"c" * 10 and m.done == 30
    assert len(seen) == 4 and seen[-1].startswith("30 B of 30 B")


def test_pull_events_sum_over_layers_and_errors_are_named() -> None:
    """The shape of dockerd's POST /images/create stream."""
    pull = Pull()
    events = [
        {"status": "Pulling from awsdeepracercommunity/deepracer-simapp", "id": "6.0.4-cpu"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "a1"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "b2"},
        {"status": "Downloading", "progressDetail": {"current": 100, "total": 1000}, "id": "a1"},
        {"status": "Downloading", "progressDetail": {"current": 50, "total": 3000}, "id": "b2"},
        {"status": "Download complete", "progressDetail": {}, "id": "a1"},
    ]
    for e in events:
        assert pull.feed(e) is None
    assert (pull.meter.done, pull.meter.total) == (1050, 4000)
    assert pull.feed({"errorDetail": {"message": "manifest unknown"}, "error": "x"}) == (
        "manifest unknown"
    )
    assert Pull().feed({"message": 'Get "https://registry-1.docker.io/v2/": no such host'})

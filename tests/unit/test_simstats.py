"""robomaker-stats' pure core: the command a container runs, the lines `gz topic -e
--json-output` prints (protobuf's JSON of gz.msgs.WorldStatistics), each worker summed up."""

from __future__ import annotations

import json
import subprocess

from drfleet.runs import simstats


def message(sim: float, real: float, factor: float, paused: bool = False) -> str:
    """A WorldStatistics as protobuf's JSON prints it: int64/uint64 as strings, defaults
    left out (so `paused` only when true, `nsec` only when not 0)."""

    def t(x: float) -> dict[str, object]:
        out: dict[str, object] = {"sec": str(int(x))}
        nsec = round((x - int(x)) * 1e9)
        if nsec:
            out["nsec"] = nsec
        return out

    doc: dict[str, object] = {
        "header": {"stamp": t(sim)},
        "simTime": t(sim),
        "realTime": t(real),
        "iterations": str(int(sim * 1000)),
        "modelCount": 3,
        "realTimeFactor": factor,
        "stepSize": {"nsec": 1000000},
    }
    if paused:
        doc["paused"] = True
    return json.dumps(doc, separators=(",", ":"))


def test_samples_are_read_from_the_echoed_lines_and_gz_noise_is_left_out() -> None:
    text = "\n".join(
        [
            "[Wrn] [Node.cc:123] some warning",
            message(10.0, 20.0, 0.48),
            message(10.5, 21.0, 0.5),
            "",
            message(11.0, 22.0, 0.52),
        ]
    )
    got = simstats.parse(text)
    assert [(s.sim_time, s.real_time, s.iterations) for s in got] == [
        (10.0, 20.0, 10000),
        (10.5, 21.0, 10500),
        (11.0, 22.0, 11000),
    ]
    w = simstats.summarize(2, "h2", "drfleet-robomaker-2", "Monaco", got)
    assert (w.factor, w.sim_time, w.paused, w.samples, w.error) == (0.5, 11.0, False, 3, "")
    assert simstats.line(w) == (
        "worker 2 on h2 (Monaco): real-time factor 0.50, 11.0 s simulated (3 samples)"
    )


def test_one_sample_gives_gazebos_own_factor_and_none_says_why() -> None:
    one = simstats.parse(message(5.0, 4.0, 1.25, paused=True))
    w = simstats.summarize(1, "h1", "c", "w", one)
    assert (w.factor, w.paused) == (1.25, True)
    assert "paused" in simstats.line(w)
    none = simstats.summarize(3, "h3", "c", "w", [], simstats.NO_WORLD)
    assert none.factor is None and none.samples == 0
    assert simstats.line(none) == f"worker 3 on h3 (w): {simstats.NO_WORLD}"
    assert simstats.summarize(3, "h3", "c", "w", []).error == "no statistics came"
    assert set(none.as_json()) == {
        "slot", "host", "container", "world", "factor", "sim_time", "paused", "samples", "error"
    }  # fmt: skip


def test_the_command_finds_the_worlds_topic_and_says_when_there_is_none(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Run with a `gz` that lists no topic: the command exits NOT_RUNNING, saying so."""
    gz = tmp_path / "gz"
    gz.write_text('#!/bin/sh\n[ "$1 $2" = \'topic -l\' ] && exit 0\necho called "$@"\n')
    gz.chmod(0o755)
    argv = simstats.command(2.5)
    assert argv[:2] == ("bash", "-c") and "-d 2.5" in argv[2]
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    res = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert res.returncode == simstats.NOT_RUNNING and simstats.NO_WORLD in res.stderr
    gz.write_text(
        "#!/bin/sh\n[ \"$1 $2\" = 'topic -l' ] && { echo /clock; echo /world/Monaco/stats; "
        'exit 0; }\necho "$@"\n'
    )
    res = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert res.stdout.split() == [
        "topic",
        "-e",
        "--json-output",
        "-t",
        "/world/Monaco/stats",
        "-d",
        "2.5",
    ]

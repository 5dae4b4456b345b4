"""Shared fixtures. Test-bed fixtures are session-scoped: hosts boot once per run and the
tests that break a host (stop, re-key) put it back before they end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.testbed import TestBed

REPO = Path(__file__).resolve().parent.parent


STREAMS = ("fleet", "rest")  # the test-bed tests' two streams, side by side (scripts/test.sh)
TESTBED = Path(__file__).resolve().parent / "testbed"


@pytest.hookimpl(tryfirst=True)  # xdist's worker reads the group into the node id after this
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks every test under tests/testbed `testbed`, so `-m "not testbed"` leaves out each
    one that needs dockerd, and splits those into two streams that pytest-xdist runs side by
    side (scripts/test.sh: -n 2 --dist loadgroup, one group per worker): the tests on the
    shared training fleet, which boots once and must stay in one process, and all the rest,
    whose beds are their own. Each stream waits on its hosts half of the time
    (docs/testing.md has the measurements), so two fill the cores one leaves idle. The unit
    tests belong to no group: xdist hands them to whichever worker is free."""
    for item in items:
        if not item.path.is_relative_to(TESTBED):
            continue
        item.add_marker(pytest.mark.testbed)
        stream = STREAMS[0] if "fleet" in getattr(item, "fixturenames", ()) else STREAMS[1]
        item.add_marker(pytest.mark.xdist_group(stream))


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict:  # type: ignore[type-arg]
        return json.loads(self.stdout)


def _run(
    module: str,
    args: tuple[str, ...],
    cwd: Path,
    timeout: float,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> Run:
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        text=True,
        timeout=timeout,
        env={**os.environ, **env} if env else None,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def schema_ok(name: str, doc: object) -> None:
    """doc is what docs/schemas/<name>.json says that command prints with --json."""
    import jsonschema

    schema = json.loads((REPO / "docs" / "schemas" / f"{name}.json").read_text())
    jsonschema.validate(doc, schema)


def invoke(
    *args: str,
    cwd: Path = REPO,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> Run:
    """Runs `invoke ARGS` from the repo, as a user would (env: extra environment; stdin: what
    it reads, else nothing)."""
    return _run("invoke", args, cwd, timeout, env, stdin)


def drfleet(*args: str, cwd: Path, timeout: float = 300) -> Run:
    """Runs the installed `drfleet` command (python -m drfleet) from any directory."""
    return _run("drfleet", args, cwd, timeout)


def killed(args: tuple[str, ...], when: Callable[[], bool], timeout: float = 120) -> None:
    """Starts `invoke ARGS` and kills it (SIGKILL, no cleanup) once `when()` holds."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "invoke", *args], cwd=REPO, stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + timeout
            while not when():
                if proc.poll() is not None:
                    log.seek(0)
                    out = log.read().decode(errors="replace")[-4000:]
                    raise AssertionError(f"it ended ({proc.returncode}) before the moment:\n{out}")
                assert time.monotonic() < deadline, "the moment to kill it never came"
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


def provision_args(bed: TestBed, env_dir: Path) -> tuple[str, ...]:
    """`provision` on a test bed, images streamed from this controller."""
    return (
        "provision",
        "--inventory",
        str(bed.inventory),
        "--env-dir",
        str(env_dir),
        "--images-from",
        "controller",
    )


def provision(bed: TestBed, env_dir: Path, *extra: str) -> Run:
    """`invoke provision` on a test bed, with --json."""
    return invoke(*provision_args(bed, env_dir), "--json", *extra, timeout=900)


@pytest.fixture(scope="session")
def bed3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestBed]:
    """Three fresh hosts (h1 the trainer), no docker on them, strict host keys."""
    with TestBed(3, tmp_path_factory.mktemp("bed3")) as bed:
        yield bed

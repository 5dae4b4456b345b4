"""Shared fixtures. Test-bed fixtures are session-scoped: hosts boot once per run and the
tests that break a host (stop, re-key) put it back before they end."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.testbed import TestBed

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict:  # type: ignore[type-arg]
        return json.loads(self.stdout)


def invoke(*args: str, cwd: Path = REPO, timeout: float = 300) -> Run:
    """Runs `invoke ARGS` from the repo, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def drfleet(*args: str, cwd: Path, timeout: float = 300) -> Run:
    """Runs the installed `drfleet` command (python -m drfleet) from any directory."""
    proc = subprocess.run(
        [sys.executable, "-m", "drfleet", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def bed3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestBed]:
    """Three fresh hosts (h1 the trainer), no docker on them, strict host keys."""
    with TestBed(3, tmp_path_factory.mktemp("bed3")) as bed:
        yield bed

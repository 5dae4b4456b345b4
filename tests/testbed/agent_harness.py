"""Runs a real drfleet-agent against a real dockerd, and cleans up only what it made."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import docker.errors


class AgentHarness:
    def __init__(self, tmp: Path, image: str) -> None:
        self.fleet = f"t{secrets.token_hex(3)}"
        self.state = tmp / "state"
        self.log = tmp / "agent.log"
        self.image = image
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = docker.from_env()
        self.foreign: list[str] = []  # containers a test made without labels

    def name(self, short: str) -> str:
        return f"{self.fleet}-{short}"

    def spec(self, short: str, **kw: Any) -> dict[str, Any]:
        return {
            "name": self.name(short),
            "image": self.image,
            "command": ["sleep", "3600"],
            "role": "robomaker",
            **kw,
        }

    def doc(self, *specs: dict[str, Any], generation: int = 1) -> dict[str, Any]:
        return {
            "fleet": self.fleet,
            "run_id": "0",
            "generation": generation,
            "containers": list(specs),
        }

    def start(self, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "drfleet_agent",
                "run",
                "--state-dir",
                str(self.state),
                "--backoff-base",
                "1",
                "--periodic",
                "2",
                *extra,
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)

    def agent(
        self, *args: str, stdin: str | bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        data = stdin.decode() if isinstance(stdin, bytes) else stdin
        return subprocess.run(
            [sys.executable, "-m", "drfleet_agent", *args, "--state-dir", str(self.state)],
            input=data,
            capture_output=True,
            text=True,
        )

    def apply(self, doc: dict[str, Any] | str) -> subprocess.CompletedProcess[str]:
        return self.agent("apply", stdin=doc if isinstance(doc, str) else json.dumps(doc))

    def status(self) -> dict[str, Any]:
        out = self.agent("status", "--json")
        return json.loads(out.stdout)  # type: ignore[no-any-return]

    def rows(self) -> dict[str, dict[str, Any]]:
        return {c["name"]: c for c in self.status()["containers"]}

    def wait(
        self, pred: Callable[[dict[str, dict[str, Any]]], bool], timeout: float = 20
    ) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        rows: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            rows = self.rows()
            try:
                if pred(rows):
                    return rows
            except KeyError:  # a container not in the status yet: the agent's pass is to come
                pass
            time.sleep(0.1)
        raise AssertionError(
            f"timed out; status: {json.dumps(rows, indent=1)}\n"
            f"agent log:\n{self.log.read_text()[-3000:]}"
        )

    def containers(self) -> list[Any]:
        # ignore_removed: one the agent removes between docker's list and its inspect is gone,
        # not an error (the suite hit that race while the agent replaced a container)
        return self.client.containers.list(
            all=True, filters={"label": f"drfleet.fleet={self.fleet}"}, ignore_removed=True
        )

    def close(self) -> None:
        self.kill()
        for c in self.containers():
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True)
        for name in self.foreign:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.containers.get(name).remove(force=True)
        for n in self.client.networks.list(filters={"label": f"drfleet.fleet={self.fleet}"}):
            with contextlib.suppress(docker.errors.NotFound):
                n.remove()


def all_running(*names: str) -> Callable[[dict[str, dict[str, Any]]], bool]:
    return lambda rows: all(rows.get(n, {}).get("state") == "running" for n in names)


def mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777

"""The controller's one way to talk to a host's agent: apply a desired state, read its status,
follow a container's logs. Status comes back parsed into drfleet_agent.contract's types."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from drfleet_agent.contract import ContainerStatus, HostStatus, State, reach
from drfleet_agent.spec import DesiredState

from drfleet.errors import DrfleetError
from drfleet.hosts.remote import Session
from drfleet.names import AGENT_PYZ, STATE_DIR
from drfleet.shell import Command, cmd

__all__ = [
    "ContainerStatus",
    "HostStatus",
    "State",
    "apply",
    "held",
    "log_lines",
    "logs",
    "reach",
    "status",
]


def command(*args: str) -> Command:
    """`drfleet-agent ARGS` on the host, against drfleet's state dir."""
    return cmd("python3", AGENT_PYZ, *args, "--state-dir", STATE_DIR)


def _parse(sess: Session, text: str, what: str) -> HostStatus:
    try:
        return HostStatus.parse(json.loads(text))
    except ValueError as exc:
        raise DrfleetError(
            f"the agent's {what} cannot be read: {exc}",
            where=sess.host.name,
            fix="is it provisioned by this drfleet? run `drfleet provision`",
        ) from None


def held(sess: Session, stack: str) -> dict[str, Any] | None:
    """The desired state of one stack the host's agent holds, as its document (credentials
    included: it stays in memory here), or None when it holds none. Asked of the agent
    (`desired`), which reads its state dir as it reads it itself."""
    res = sess.run(
        command("desired", stack),
        become=True,
        check=False,
        task=f"the {stack} stack",
        prints_secret=True,  # never echoed live: it holds the run's keys
    )
    if res.exit_code == 3:
        return None
    if res.exit_code == 2 and "invalid choice" in res.stderr:
        raise DrfleetError(
            "the agent predates `desired`",
            where=sess.host.name,
            fix="run `drfleet provision` to update it",
        )
    if res.exit_code != 0:
        raise res.error(f"the {stack} stack")
    try:
        doc: dict[str, Any] = json.loads(res.stdout)
    except ValueError as exc:
        raise DrfleetError(
            f"the agent's {stack} stack cannot be read: {exc}", where=sess.host.name
        ) from None
    return doc


def status(sess: Session, timeout: float = 30) -> HostStatus:
    res = sess.run(
        command("status", "--json"), become=True, timeout=timeout, task="agent status", check=False
    )
    if res.exit_code != 0 and "can't open file" in res.stderr and AGENT_PYZ in res.stderr:
        raise DrfleetError(
            "the agent is not installed",
            where=sess.host.name,
            fix="run `drfleet provision` (it installs the agent and what it needs)",
        )
    if res.exit_code != 0:
        raise res.error("agent status")
    return _parse(sess, res.stdout, "status")


def apply(
    sess: Session, desired: DesiredState, wait: float, force: bool = False, clear: bool = False
) -> HostStatus:
    """Hands the agent one stack's desired state and waits up to `wait` s for it to hold;
    raises with each container of it that does not run, or when the agent refuses the state
    (an older generation of the stack it holds, unless `force`; a container name or host port
    of another stack). clear: every other stack goes too."""
    flags = (["--force"] if force else []) + (["--clear"] if clear else [])
    res = sess.run(
        command("apply", "--wait", str(wait), *flags),
        stdin=json.dumps(desired.document()),
        become=True,
        check=False,
        timeout=wait + 60,
        task="apply desired state",
    )
    if res.exit_code == 2:
        old = "unknown field 'stack'" in res.tail()
        raise DrfleetError(
            f"the agent refused the desired state: {res.tail()}",
            where=sess.host.name,
            fix="its agent predates stacks: run `drfleet provision` to update it" if old else None,
        )
    lines = res.stdout.strip().splitlines()
    if not lines:
        raise DrfleetError(
            f"no answer from the agent: {res.tail()}",
            where=sess.host.name,
            fix="is it provisioned? run `drfleet provision`",
        )
    st = _parse(sess, lines[-1], "answer")
    if res.exit_code != 0:
        bad = [
            f"{c.name}: {c.state.value} {c.last_error}".strip()
            for c in st.stack(desired.stack)
            if c.state is not State.RUNNING
        ]
        raise DrfleetError(
            f"not everything runs after {wait:g} s: " + "; ".join(bad), where=sess.host.name
        )
    return st


def logs(sess: Session, name: str, tail: int, follow: bool) -> Iterator[bytes]:
    args = ["logs", name, "--tail", str(tail)] + (["--follow"] if follow else [])
    yield from sess.stream_out(command(*args), become=True)


def log_lines(sess: Session, name: str, tail: int, follow: bool) -> Iterator[dict[str, str]]:
    """Each line with its host, container, stream (stdout or stderr) and dockerd's time."""
    args = ["logs", name, "--json", "--tail", str(tail)] + (["--follow"] if follow else [])
    buf = b""
    for chunk in sess.stream_out(command(*args), become=True):
        buf += chunk
        *whole, buf = buf.split(b"\n")
        for raw in whole:
            if raw.strip():
                yield {"host": sess.host.name, **json.loads(raw)}

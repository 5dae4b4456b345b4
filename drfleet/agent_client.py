"""The controller's one way to talk to a host's agent: apply a desired state, read its status,
follow a container's logs. Status comes back parsed into drfleet_agent.contract's types."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from drfleet_agent.contract import ContainerStatus, HostStatus, State, reach

from drfleet.errors import DrfleetError
from drfleet.names import AGENT_PYZ, EVALUATION, FLEET, STATE_DIR
from drfleet.remote import Session
from drfleet.shell import Command, cmd
from drfleet.specs import with_evaluation

__all__ = [
    "ContainerStatus",
    "HostStatus",
    "State",
    "apply",
    "empty",
    "log_lines",
    "logs",
    "reach",
    "status",
]


def command(*args: str) -> Command:
    """`drfleet-agent ARGS` on the host, against drfleet's state dir."""
    return cmd("python3", AGENT_PYZ, *args, "--state-dir", STATE_DIR)


def empty(run_id: str, generation: int) -> dict[str, Any]:
    """A desired state with no container: the host runs nothing of drfleet's."""
    return {"fleet": FLEET, "run_id": run_id, "generation": generation, "containers": []}


def _parse(sess: Session, text: str, what: str) -> HostStatus:
    try:
        return HostStatus.parse(json.loads(text))
    except ValueError as exc:
        raise DrfleetError(
            f"the agent's {what} cannot be read: {exc}",
            where=sess.host.name,
            fix="is it provisioned by this drfleet? run `drfleet provision`",
        ) from None


def desired(sess: Session) -> dict[str, Any] | None:
    """The desired state the host's agent holds (credentials included: it stays in memory
    here), or None when it holds none. An evaluation is added beside it, never in its place."""
    res = sess.run(
        cmd("cat", f"{STATE_DIR}/desired.json"),
        become=True,
        check=False,
        task="desired state",
        prints_secret=True,  # never echoed live: it holds the run's keys
    )
    if res.exit_code != 0:
        return None
    try:
        doc: dict[str, Any] = json.loads(res.stdout)
    except ValueError as exc:
        raise DrfleetError(
            f"the agent's desired state cannot be read: {exc}", where=sess.host.name
        ) from None
    return doc


def carried(sess: Session, doc: dict[str, Any]) -> dict[str, Any]:
    """doc, plus the evaluation the host runs now: an evaluation outlives what train,
    --rebalance and minio's own start change on its host (`evaluate --stop` and `stop` end
    it)."""
    if any(c["name"] == EVALUATION for c in doc["containers"]):
        return doc
    held = desired(sess)
    spec = next((c for c in (held or {}).get("containers", []) if c["name"] == EVALUATION), None)
    return with_evaluation(doc, spec, doc["run_id"], doc["generation"]) if spec else doc


def status(sess: Session, timeout: float = 30) -> HostStatus:
    res = sess.run(command("status", "--json"), become=True, timeout=timeout, task="agent status")
    return _parse(sess, res.stdout, "status")


def apply(sess: Session, desired: dict[str, Any], wait: float, force: bool = False) -> HostStatus:
    """Hands the agent a desired state and waits up to `wait` s for it to hold; raises with
    each container that does not run, or when the agent refuses the state (an older
    generation of the run it holds, unless `force`)."""
    res = sess.run(
        command("apply", "--wait", str(wait), *(["--force"] if force else [])),
        stdin=json.dumps(desired),
        become=True,
        check=False,
        timeout=wait + 60,
        task="apply desired state",
    )
    if res.exit_code == 2:
        raise DrfleetError(
            f"the agent refused the desired state: {res.tail()}", where=sess.host.name
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
            for c in st.containers
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

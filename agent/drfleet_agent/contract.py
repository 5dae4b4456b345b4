"""What passes between a controller and an agent, typed: the desired state going in (defined
in spec.py, validated there) and the status coming out. The agent writes HostStatus; the
controller reads it back with HostStatus.parse and nothing else, so the JSON shape lives here
alone. This module imports nothing of the controller (the agent is shipped on its own).
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field
from typing import Any, TypeVar

from drfleet_agent.spec import ContainerSpec, DesiredState, Mount, SpecError, parse

__all__ = [
    "AgentInfo",
    "ContainerSpec",
    "ContainerStatus",
    "DesiredState",
    "HostStatus",
    "Mount",
    "Reason",
    "SpecError",
    "State",
    "parse",
]


E = TypeVar("E", bound=enum.Enum)


def _member(cls: type[E], value: str, default: E) -> E:
    """The member named by value, or default for a value this side does not know (a newer
    agent's): never an error."""
    try:
        return cls(value)
    except ValueError:
        return default


class State(str, enum.Enum):
    """A desired container's state as its agent sees it."""

    RUNNING = "running"
    WAITING = "waiting"  # exited, restarts after a backoff
    COMPLETED = "completed"  # exited 0 under restart policy never/on-failure
    EXITED = "exited"  # exited non-zero and will not be restarted
    MISSING = "missing"  # not created yet
    ERROR = "error"  # dockerd refused an action (reason: action-failed)
    CONFLICT = "conflict"  # a container of that name exists that drfleet did not create
    CREATED = "created"  # docker's own states, while a pass is under way
    RESTARTING = "restarting"
    PAUSED = "paused"
    REMOVING = "removing"
    DEAD = "dead"
    UNKNOWN = "unknown"  # a state this controller does not know (a newer agent)

    @classmethod
    def of(cls, value: str) -> State:
        return _member(cls, value, cls.UNKNOWN)

    @property
    def settled(self) -> bool:
        """Whether waiting longer changes nothing: up, or done for good."""
        return self in (State.RUNNING, State.COMPLETED)

    @property
    def definite_failure(self) -> bool:
        return self in (State.ERROR, State.CONFLICT)


class Reason(str, enum.Enum):
    """Why a container is not where its spec wants it."""

    NONE = ""
    NAME_TAKEN = "name-taken"  # a foreign container holds the name
    ACTION_FAILED = "action-failed"  # dockerd refused create/start/remove

    @classmethod
    def of(cls, value: str) -> Reason:
        return _member(cls, value, cls.NONE)


@dataclass
class ContainerStatus:
    name: str
    role: str
    image: str
    state: State
    reason: Reason = Reason.NONE
    restarts: int = 0
    last_exit_code: int | None = None
    last_error: str = ""
    container_id: str = ""
    started_at: str | None = None
    ports: dict[str, int] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)  # port -> host address it listens on
    next_restart_at: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    stack: str = ""  # the stack whose desired state holds it

    def reach(self, port: str) -> str:
        """The address on its host that reaches a published port: the one it listens on, or
        127.0.0.1 when it listens on all of them."""
        return reach(self.addresses.get(port, ""))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "image": self.image,
            "state": self.state.value,
            "reason": self.reason.value,
            "restarts": self.restarts,
            "last_exit_code": self.last_exit_code,
            "last_error": self.last_error,
            "container_id": self.container_id,
            "started_at": self.started_at,
            "ports": dict(self.ports),
            "addresses": dict(self.addresses),
            "next_restart_at": self.next_restart_at,
            "labels": dict(self.labels),
            "stack": self.stack,
        }

    @classmethod
    def parse(cls, doc: dict[str, Any]) -> ContainerStatus:
        code = doc.get("last_exit_code")
        return cls(
            name=str(doc["name"]),
            role=str(doc.get("role") or ""),
            image=str(doc.get("image") or ""),
            state=State.of(str(doc.get("state") or "")),
            reason=Reason.of(str(doc.get("reason") or "")),
            restarts=int(doc.get("restarts") or 0),
            last_exit_code=None if code is None else int(code),
            last_error=str(doc.get("last_error") or ""),
            container_id=str(doc.get("container_id") or ""),
            started_at=doc.get("started_at"),
            ports={str(k): int(v) for k, v in (doc.get("ports") or {}).items()},
            addresses={str(k): str(v) for k, v in (doc.get("addresses") or {}).items()},
            next_restart_at=doc.get("next_restart_at"),
            labels={str(k): str(v) for k, v in (doc.get("labels") or {}).items()},
            stack=str(doc.get("stack") or ""),
        )


def reach(listens_on: str) -> str:
    """Where on a host to connect to a port that listens on `listens_on` (pure)."""
    try:
        ip = ipaddress.ip_address(listens_on)
    except ValueError:
        return "127.0.0.1"
    return "127.0.0.1" if ip.is_unspecified else str(ip)


@dataclass
class AgentInfo:
    version: str = ""
    pid: int | None = None
    state_dir: str = ""
    fleet: str = ""
    run_id: str = ""  # an agent before stacks held one run; see `stacks`
    generation: int = 0  # the newest of its stacks'
    stacks: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> run_id, generation
    docker_reachable: bool = False
    docker_error: str = ""
    last_reconcile: str | None = None
    updated_at: str | None = None
    running: bool = False  # set by `status`: is a daemon alive now
    stale: bool = False  # written by an earlier daemon than the one running
    # an EC2 instance's notices (ec2notices.Notices.to_json); None: the agent does not ask
    ec2: dict[str, Any] | None = None

    @property
    def interruption(self) -> dict[str, str] | None:
        """EC2's spot interruption notice for this host: {action, time}; None: none."""
        got = (self.ec2 or {}).get("interruption")
        return dict(got) if isinstance(got, dict) else None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "pid": self.pid,
            "state_dir": self.state_dir,
            "fleet": self.fleet,
            "run_id": self.run_id,
            "generation": self.generation,
            "stacks": {k: dict(v) for k, v in self.stacks.items()},
            "docker": {"reachable": self.docker_reachable, "error": self.docker_error},
            "last_reconcile": self.last_reconcile,
            "updated_at": self.updated_at,
            "running": self.running,
            "stale": self.stale,
            "ec2": self.ec2,
        }

    @classmethod
    def parse(cls, doc: dict[str, Any]) -> AgentInfo:
        docker = doc.get("docker") or {}
        pid = doc.get("pid")
        return cls(
            version=str(doc.get("version") or ""),
            pid=None if pid is None else int(pid),
            state_dir=str(doc.get("state_dir") or ""),
            fleet=str(doc.get("fleet") or ""),
            run_id=str(doc.get("run_id") or ""),
            generation=int(doc.get("generation") or 0),
            stacks={
                str(k): {"run_id": str(v.get("run_id") or ""), "generation": int(v["generation"])}
                for k, v in (doc.get("stacks") or {}).items()
            },
            docker_reachable=bool(docker.get("reachable")),
            docker_error=str(docker.get("error") or ""),
            last_reconcile=doc.get("last_reconcile"),
            updated_at=doc.get("updated_at"),
            running=bool(doc.get("running")),
            stale=bool(doc.get("stale")),
            ec2=dict(doc["ec2"]) if isinstance(doc.get("ec2"), dict) else None,
        )


@dataclass
class HostStatus:
    """One agent's report: itself, and each container of its desired state."""

    agent: AgentInfo
    containers: list[ContainerStatus]

    def to_json(self) -> dict[str, Any]:
        return {
            "agent": self.agent.to_json(),
            "containers": [c.to_json() for c in self.containers],
        }

    @classmethod
    def parse(cls, doc: Any) -> HostStatus:
        """The controller's one way to read a status document; a malformed one is a
        ValueError that names what is wrong."""
        if not isinstance(doc, dict):
            raise ValueError(f"an agent status must be a JSON object, not {type(doc).__name__}")
        try:
            return cls(
                AgentInfo.parse(doc.get("agent") or {}),
                [ContainerStatus.parse(c) for c in doc.get("containers") or []],
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"a malformed agent status: {exc!r}") from None

    def get(self, name: str) -> ContainerStatus | None:
        return next((c for c in self.containers if c.name == name), None)

    def stack(self, name: str) -> list[ContainerStatus]:
        return [c for c in self.containers if c.stack == name]

    def holds(self, stack: str, generation: int, count: int) -> bool:
        """Whether the status shows the stack at this generation with all `count` containers
        (a stack with none: that it is gone)."""
        if not count:
            return stack not in self.agent.stacks and not self.stack(stack)
        have = self.agent.stacks.get(stack)
        return (
            have is not None
            and have["generation"] == generation
            and len(self.stack(stack)) == count
        )

    def settled(self, stack: str, generation: int, count: int) -> bool:
        return self.holds(stack, generation, count) and all(
            c.state.settled for c in self.stack(stack)
        )

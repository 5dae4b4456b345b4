"""drfleet-agent run | apply | status | logs.

Runs on the host's own python3 (3.10+) with nothing from PyPI on the host: the controller ships
the agent and its few pure-Python dependencies as one zip application.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import time

from drfleet_agent import __version__
from drfleet_agent.contract import AgentInfo, HostStatus
from drfleet_agent.engine import ActionFailed, DockerDown, Engine
from drfleet_agent.reconcile import Backoff
from drfleet_agent.spec import MAX_BYTES, SpecError, merge, parse
from drfleet_agent.store import DEFAULT_DIR, StateDir


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="drfleet-agent",
        description=("Keeps this host's assigned containers running, as the controller desires."),
    )
    ap.add_argument("--version", action="version", version=__version__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def state_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--state-dir",
            default=str(DEFAULT_DIR),
            help=f"where stacks/ and status.json live (default {DEFAULT_DIR})",
        )

    run = sub.add_parser("run", help="the daemon: reconcile containers against every stack")
    state_dir(run)
    run.add_argument(
        "--docker-host",
        default=os.environ.get("DOCKER_HOST"),
        help="dockerd address (default: the local socket)",
    )
    run.add_argument(
        "--backoff-base",
        type=float,
        default=10.0,
        help="first restart delay after a crash, in seconds (default 10)",
    )
    run.add_argument(
        "--backoff-cap",
        type=float,
        default=300.0,
        help="longest restart delay, in seconds (default 300)",
    )
    run.add_argument(
        "--reset-after",
        type=float,
        default=600.0,
        help="seconds of clean running that forgive earlier crashes (default 600)",
    )
    run.add_argument(
        "--periodic",
        type=float,
        default=10.0,
        help="reconcile at least this often, in seconds (default 10)",
    )
    run.add_argument(
        "--ec2-notices",
        action="store_true",
        help="this host is an EC2 instance: report its spot interruption notices and rebalance "
        "recommendations (IMDSv2 at 169.254.169.254) in the status",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    apply = sub.add_parser(
        "apply", help="validate one stack's desired state from stdin and hand it over"
    )
    state_dir(apply)
    apply.add_argument(
        "--force", action="store_true", help="accept a generation older than the current one"
    )
    apply.add_argument(
        "--clear",
        action="store_true",
        help="drop every other stack too (the host runs this stack alone, or nothing)",
    )
    apply.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="then wait until every container runs; print the status as JSON",
    )

    desired = sub.add_parser(
        "desired", help="one stack's desired state as JSON (exit 3: the host holds none)"
    )
    state_dir(desired)
    desired.add_argument("stack")

    status = sub.add_parser("status", help="what runs, restarts, last errors")
    state_dir(status)
    status.add_argument("--json", action="store_true", help="the status document as JSON")

    logs = sub.add_parser("logs", help="a managed container's logs")
    state_dir(logs)
    logs.add_argument("name")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("--tail", type=int, default=None)
    logs.add_argument(
        "--json", action="store_true", help="JSON Lines: container, stream, time, line"
    )
    logs.add_argument("--docker-host", default=os.environ.get("DOCKER_HOST"))
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    state = StateDir(args.state_dir)
    try:
        return int(COMMANDS[args.cmd](args, state))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def cmd_run(args: argparse.Namespace, state: StateDir) -> int:
    from drfleet_agent.daemon import Agent
    from drfleet_agent.ec2notices import Metadata

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    # Handlers go in before the pid file exists: `apply` signals that pid, and SIGHUP's
    # default action would kill an agent that is still starting.
    agent = Agent(
        state,
        lambda: Engine(args.docker_host),
        backoff=Backoff(args.backoff_base, args.backoff_cap, args.reset_after),
        periodic=args.periodic,
        ec2_notices=Metadata() if args.ec2_notices else None,
    )
    agent.install_signal_handlers()
    if not state.lock():
        sys.stderr.write(
            f"drfleet-agent: another agent runs on {state.path} (pid {state.daemon_pid()})\n"
        )
        return 2
    agent.reload()  # whatever was applied while we were starting
    agent.run()
    return 0


def cmd_apply(args: argparse.Namespace, state: StateDir) -> int:
    data = sys.stdin.buffer.read(MAX_BYTES + 1)  # parse() refuses more; never load it all
    try:
        new = parse(data)
    except SpecError as exc:
        sys.stderr.write(f"drfleet-agent apply: refused: {exc}; the previous state stays\n")
        return 2
    try:
        held = state.read_stacks()
    except SpecError:
        held = {}
    old = held.get(new.stack)
    if (
        old
        and not args.force
        and old.fleet == new.fleet
        and old.run_id == new.run_id
        and new.generation < old.generation
    ):
        sys.stderr.write(
            f"drfleet-agent apply: refused: stack {new.stack!r} holds generation "
            f"{old.generation}, newer than {new.generation}; a newer assignment wins (use "
            "--force to override)\n"
        )
        return 2
    others = {} if args.clear else {k: v for k, v in held.items() if k != new.stack}
    try:
        merge({**others, new.stack: new})
    except SpecError as exc:
        sys.stderr.write(f"drfleet-agent apply: refused: {exc}; the previous state stays\n")
        return 2
    for gone in set(held) - set(others) - {new.stack}:
        state.write_stack(dataclasses.replace(held[gone], containers=[]))
    state.write_stack(new)
    pid = state.daemon_pid()
    if pid:
        # if the signal cannot be sent, the daemon still notices the file within a second
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGHUP)
    if args.wait > 0:
        return _wait(state, new.stack, new.generation, len(new.containers), args.wait)
    sys.stdout.write(
        json.dumps(
            {
                "accepted": True,
                "stack": new.stack,
                "generation": new.generation,
                "containers": len(new.containers),
                "agent_running": pid is not None,
            }
        )
        + "\n"
    )
    return 0


def _wait(state: StateDir, stack: str, generation: int, count: int, timeout: float) -> int:
    """Until the status shows the stack as applied and its containers settled; prints the
    status (every stack's containers)."""
    deadline = time.monotonic() + timeout
    st: HostStatus | None = None
    while time.monotonic() < deadline:
        st = state.read_status()
        if st and st.holds(stack, generation, count):
            if st.settled(stack, generation, count):
                sys.stdout.write(json.dumps(st.to_json()) + "\n")
                return 0
            if any(c.state.definite_failure for c in st.stack(stack)):
                break  # definite: waiting longer will not help
        time.sleep(0.2)
    sys.stdout.write(json.dumps(st.to_json() if st else {}) + "\n")
    sys.stderr.write("drfleet-agent apply: not everything runs\n")
    return 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmd_desired(args: argparse.Namespace, state: StateDir) -> int:
    """The stack as the controller sent it (its document), read through the state dir's
    own reading (a stack split from an older agent's one desired state included)."""
    held = state.read_stacks().get(args.stack)
    if held is None:
        print(f"no stack {args.stack!r} here", file=sys.stderr)
        return 3
    print(json.dumps(held.document()))
    return 0


def cmd_status(args: argparse.Namespace, state: StateDir) -> int:
    st = state.read_status()
    pid = state.daemon_pid()
    if st is None:
        st = HostStatus(AgentInfo(pid=pid), [])
    st.agent.running = pid is not None
    # written by a daemon that is gone (killed; the one systemd started again has not written
    # yet, or has not even written its pid file): the pid file alone cannot tell
    writer = st.agent.pid
    st.agent.stale = writer is not None and (
        not _alive(writer) or (pid is not None and writer != pid)
    )
    if args.json:
        sys.stdout.write(json.dumps(st.to_json(), indent=1, sort_keys=True) + "\n")
        return 0
    a = st.agent
    docker_state = "reachable" if a.docker_reachable else f"UNREACHABLE: {a.docker_error}"
    held = ", ".join(f"{k} (generation {v['generation']})" for k, v in sorted(a.stacks.items()))
    print(
        f"agent {'running' if a.running else 'NOT RUNNING'} (pid {a.pid}), "
        f"stacks {held or 'none'}, docker {docker_state}, "
        f"last reconcile {a.last_reconcile}"
    )
    notice = a.interruption
    if notice:
        print(f"  EC2 spot interruption notice: {notice['action']} at {notice['time']}")
    elif a.ec2 and a.ec2.get("rebalance"):
        print(f"  EC2 rebalance recommendation since {a.ec2['rebalance']}")
    for c in st.containers:
        ports = ",".join(f"{h}->{p}" for p, h in c.ports.items())
        err = f"  error: {c.last_error}" if c.last_error else ""
        print(
            f"  {c.name:<28} {c.state.value:<10} restarts={c.restarts:<3} "
            f"exit={c.last_exit_code} {c.container_id} {ports}{err}"
        )
    return 0


def cmd_logs(args: argparse.Namespace, state: StateDir) -> int:
    try:
        fleet = state.read_desired().fleet
        engine = Engine(args.docker_host)
        if args.json:  # JSON Lines: container, stream, time, line
            for item in engine.log_lines(args.name, fleet, args.follow, args.tail):
                sys.stdout.write(json.dumps(item) + "\n")
                sys.stdout.flush()
            return 0
        for chunk in engine.logs(args.name, fleet, args.follow, args.tail):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
    except (ActionFailed, DockerDown) as exc:
        sys.stderr.write(f"drfleet-agent logs: {exc}\n")
        return 1
    return 0


COMMANDS = {
    "run": cmd_run,
    "apply": cmd_apply,
    "desired": cmd_desired,
    "status": cmd_status,
    "logs": cmd_logs,
}


if __name__ == "__main__":
    sys.exit(main())

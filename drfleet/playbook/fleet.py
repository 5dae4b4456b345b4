"""Tasks that need several hosts at once: images from the controller or a peer, the swarm.
Each is given every host of the play that reached it (state and rendered arguments) and
returns a result per host. Decisions are pure functions in the modules; this is the I/O."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from drfleet.errors import DrfleetError
from drfleet.hosts import probe
from drfleet.hosts.remote import fan_out
from drfleet.images import image_relay, localdocker
from drfleet.names import IMAGE_PINS
from drfleet.playbook.model import FleetStep, Late, Phase, TaskResult
from drfleet.playbook.modules.docker import (
    ImageCopy,
    advertise_address,
    image_phases,
    plan_swarm,
    swarm_phases,
)
from drfleet.progress import Meter, Pull, metered, size
from drfleet.shell import Secret, cmd

if TYPE_CHECKING:
    from drfleet.playbook.hoststate import FleetRunner as Runner
    from drfleet.playbook.hoststate import HostState
    from drfleet.playbook.model import Task

Chosen = list[tuple["HostState", dict[str, Any]]]


def _images(args: dict[str, Any]) -> list[str]:
    value = args["images"]
    return [value] if isinstance(value, str) else [str(v) for v in value if v]


# -- docker_image ----------------------------------------------------------------------------
def docker_image(runner: Runner, task: Task, chosen: Chosen) -> dict[str, TaskResult]:
    """The images task: its phases decided first, as data (image_phases: the relay, each
    host's copies, the ids recorded), then run in order, or in check mode only said."""
    source = chosen[0][1]["source"] or runner.options.images_from
    states = {st.host.name: st for st, _ in chosen}
    wanted = {st.host.name: _images(args) for st, args in chosen}
    controller_ids: dict[str, str | None] = {}
    identities: dict[str, str | None] = {}
    if source in ("controller", "controller-direct"):
        every = {i for imgs in wanted.values() for i in imgs}
        controller_ids = localdocker.image_ids(every)
        identities = localdocker.identities(every)
    phases = image_phases(
        source,
        wanted,
        {n: st.typed.images for n, st in states.items()},
        {n: st.typed.error("images") for n, st in states.items()},
        controller_ids,
        {n: image_relay.why_not(st) for n, st in states.items()} if source == "controller" else {},
        identities,
    )
    check = runner.options.check
    relayed: dict[str, set[str]] = {}
    notes = {n: list(v) for n, v in phases.notes.items()}
    if phases.relay and not check:  # phase 1
        relayed = _relay(runner, states, phases.relay, notes)

    def copies(name: str) -> TaskResult:  # phase 2
        st, started = states[name], time.monotonic()
        todo = [c for c in phases.copies[name] if c.image not in relayed.get(name, ())]
        why = "; ".join(notes.get(name, []))
        if not todo and relayed.get(name):
            st.dirty.add("images")
            return TaskResult(task.name, "changed", f"copied from controller ({why})")
        if not todo:
            return TaskResult(task.name, "ok")
        what = ", ".join(c.image for c in todo)
        if check:
            return TaskResult(task.name, "changed", f"would copy {what} from {source}")
        for note in notes.get(name, []):
            runner.progress(st, note)
        try:
            for c in todo:
                _copy(runner, st, c, states)
        except DrfleetError as exc:
            return TaskResult(
                task.name,
                "failed",
                f"{name}: task {task.name!r}: {exc.message}",
                elapsed=time.monotonic() - started,
            )
        st.dirty.add("images")
        return TaskResult(
            task.name,
            "changed",
            f"copied {what} from {source}" + (f" ({why})" if why else ""),
            elapsed=time.monotonic() - started,
        )

    def one(name: str) -> TaskResult:
        if name in phases.failed:
            return TaskResult(task.name, "failed", phases.failed[name])
        result = copies(name)
        if result.status == "failed" or check:
            return result
        pin = phases.pin[name]  # phase 3
        why = _pin(states[name], list(pin), {i: v for i, v in pin.items() if v})
        if why:
            return TaskResult(task.name, "failed", f"{name}: task {task.name!r}: {why}")
        return result

    outcomes = fan_out(
        [st.host for st, _ in chosen], lambda h: one(h.name), limit=runner.options.remote.limit
    )
    return {
        o.host.name: o.value
        if o.value is not None
        else TaskResult(task.name, "failed", o.error.message if o.error else "failed")
        for o in outcomes
    }


def _copy(runner: Runner, st: HostState, c: ImageCopy, states: dict[str, HostState]) -> None:
    """One image onto the host, with bytes, rate and time left on its line."""
    runner.progress(st, f"image {c.image} from {c.source}")

    def tick(line: str) -> None:
        runner.meter(st, f"image {c.image} from {c.source}: {line}")

    if c.source in ("controller", "controller-direct"):
        meter = Meter(localdocker.size(c.image))
        stream = localdocker.save(c.image)
    elif c.source == "peer" and c.peer:
        peer = states[c.peer]
        assert peer.session is not None
        meter = Meter(_size_on(peer, c.image))
        stream = peer.session.stream_out(cmd("docker", "save", c.image), become=peer.become)
    else:
        _pull(st, c.image, tick)
        return
    st.run(
        cmd("docker", "load", "-q"),
        stdin=metered(stream, meter, tick),
        timeout=3600,
        become=st.become,
    )


# Reads each image on the host and, when every one is what the controller expects (its own
# image's identity, for an image it sent: probe.identity, the same in both of docker's image
# stores), records their ids in IMAGE_PINS for the agent, which creates its containers from
# those ids: a tag moved later (a crafted archive, say) changes nothing.
# Prints {"ids": ..., "seen": ..., "error": ...}; writes only when something changed.
PIN = (
    probe.identity_source()
    + """\
import json, os, subprocess, sys
path, given = sys.argv[1], json.load(sys.stdin)
ids, seen = {}, {}
for image in given["images"]:
    out = subprocess.run(["docker", "image", "inspect", image],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    doc = json.loads(out.stdout.decode())[0] if out.returncode == 0 else None
    ids[image] = doc["Id"] if doc else None
    seen[image] = identity(doc) if doc else None
bad = [i for i, want in given["expect"].items() if want and seen.get(i) != want]
missing = [i for i, got in ids.items() if not got]
if bad or missing:
    print(json.dumps({"ids": ids, "seen": seen, "error": bad or missing}))
    sys.exit(0)
try:
    with open(path) as fh:
        doc = json.load(fh)
except (OSError, ValueError):
    doc = {}
doc = doc if isinstance(doc, dict) else {}
if any(doc.get(k) != v for k, v in ids.items()):
    doc.update(ids)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path + ".tmp", "w") as fh:
        json.dump(doc, fh, indent=1, sort_keys=True)
    os.chmod(path + ".tmp", 0o644)
    os.replace(path + ".tmp", path)
print(json.dumps({"ids": ids, "seen": seen, "error": None}))
"""
)


def _pin(st: HostState, images: list[str], expect: dict[str, str | None]) -> str | None:
    """Why the images on the host cannot be recorded for the agent (None: recorded)."""
    doc = {"images": images, "expect": expect}
    try:
        out = st.run(
            cmd("python3", "-c", PIN, IMAGE_PINS),
            stdin=json.dumps(doc),
            become=st.become,
            timeout=120,
        )
        said = json.loads(out.stdout.strip().splitlines()[-1])
    except (DrfleetError, ValueError, IndexError) as exc:
        return f"cannot record the images' ids: {getattr(exc, 'message', exc)}"
    if said.get("error"):
        seen = said.get("seen") or {}
        return "; ".join(
            f"after the copy {i} is {seen.get(i) or 'missing'} here, not {expect.get(i) or 'there'}"
            for i in said["error"]
        )
    return None


def _relay(
    runner: Runner,
    states: dict[str, HostState],
    relay: dict[str, list[str]],
    notes: dict[str, list[str]],
) -> dict[str, set[str]]:
    """Each image of the relay phase into its hosts as one relayed copy; the hosts it did
    not reach (and why) are left to their direct copy. Returns host -> images it put there."""
    relayed: dict[str, set[str]] = {}
    for image, names in sorted(relay.items()):
        chain = [states[n] for n in names]
        for st in chain:
            runner.progress(st, f"image {image} from controller (relayed)")
        by_name = {st.host.name: st for st in chain}

        def tick(
            name: str, line: str, image: str = image, by_name: dict[str, HostState] = by_name
        ) -> None:
            runner.meter(by_name[name], f"image {image} from controller (relayed): {line}")

        addresses = {st.host.name: advertise_address(st.host, st.typed) for st in chain}
        try:
            failed, sent = image_relay.send(
                chain, addresses, image, tick, runner.options.remote.limit
            )
        except DrfleetError as exc:
            failed, sent = {st.host.name: exc.message for st in chain}, 0
        for st in chain:
            name = st.host.name
            if name in failed:
                notes.setdefault(name, []).append(
                    f"{image}: the relay did not reach it ({failed[name]}); sent directly"
                )
            else:
                relayed.setdefault(name, set()).add(image)
                notes.setdefault(name, []).append(
                    f"{image}: relayed, {size(sent)} left this machine for {len(chain)} hosts"
                )
    return relayed


# POST /images/create on the host's dockerd: its pull events, one JSON object a line, with
# bytes per layer (`docker pull` prints none when its output is not a terminal). With
# `docker login`'s saved credentials for the registry they go in X-Registry-Auth; a
# credential helper is docker's own business: then `docker pull` runs (no byte counts).
PULL = """\
import base64, json, os, socket, sys
image = sys.argv[1]
last = image.rsplit("/", 1)[-1]
name, tag = (image.rsplit(":", 1) if ":" in last else (image, "latest"))
first = name.split("/")[0]
registry = first if "/" in name and ("." in first or ":" in first or first == "localhost") \\
    else "https://index.docker.io/v1/"
try:
    cfg = json.load(open(os.path.expanduser("~/.docker/config.json")))
except (OSError, ValueError):
    cfg = {}
if cfg.get("credsStore") or registry in (cfg.get("credHelpers") or {}):
    os.execvp("docker", ["docker", "pull", "-q", image])
head = "POST /images/create?fromImage=%s&tag=%s HTTP/1.0\\r\\nHost: docker\\r\\n" % (name, tag)
auth = ((cfg.get("auths") or {}).get(registry) or {}).get("auth")
if auth:
    user, _, password = base64.b64decode(auth).decode().partition(":")
    doc = {"username": user, "password": password, "serveraddress": registry}
    token = base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()
    head += "X-Registry-Auth: %s\\r\\n" % token
s = socket.socket(socket.AF_UNIX)
s.connect("/var/run/docker.sock")
s.sendall((head + "Content-Length: 0\\r\\n\\r\\n").encode())
f = s.makefile("rb")
status = f.readline().split(b" ", 2)[1]
while f.readline() not in (b"\\r\\n", b""):
    pass
for line in f:
    sys.stdout.write(line.decode(errors="replace"))
    sys.stdout.flush()
if status != b"200":
    sys.exit(1)
"""


def _pull(st: HostState, image: str, tick: Callable[[str], None]) -> None:
    """Pulls on the host, with bytes, rate and time left from dockerd's events."""
    assert st.session is not None
    pull = Pull()
    buf, last = b"", 0.0
    try:
        for chunk in st.session.stream_out(cmd("python3", "-c", PULL, image), become=st.become):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue  # `docker pull -q`'s own line, under a credential helper
                error = pull.feed(event) if isinstance(event, dict) else None
                if error:
                    raise DrfleetError(f"docker pull {image}: {error}", where=st.host.name)
            if time.monotonic() - last >= 0.5:
                last = time.monotonic()
                tick(pull.meter.line())
    except DrfleetError as exc:
        if "exited with status" in exc.message and "docker pull" not in exc.message:
            raise DrfleetError(f"docker pull {image} failed: {exc.message}") from None
        raise
    tick(pull.meter.line())


def _size_on(st: HostState, image: str) -> int | None:
    out = st.run(
        cmd("docker", "image", "inspect", "--format", "{{.Size}}", image),
        become=st.become,
        check=False,
    )
    text = out.stdout.strip()
    return int(text) if out.ok and text.isascii() and text.isdigit() else None


# -- swarm -------------------------------------------------------------------------------------
def swarm(runner: Runner, task: Task, chosen: Chosen) -> dict[str, TaskResult]:
    args = chosen[0][1]
    trainer_name = runner.trainer_name
    if not trainer_name:
        return {
            st.host.name: TaskResult(
                task.name,
                "failed",
                "no host has the trainer role; the swarm is managed from the trainer",
            )
            for st, _ in chosen
        }
    trainer = runner.peer_state(trainer_name)
    if trainer.session is None or (
        trainer.stopped and trainer_name not in {st.host.name for st, _ in chosen}
    ):
        return {
            st.host.name: TaskResult(
                task.name,
                "failed",
                f"the trainer {trainer_name} is not reachable: {trainer.report.error}",
            )
            for st, _ in chosen
        }
    members = {st.host.name: st for st, _ in chosen}
    members[trainer_name] = trainer
    for st in members.values():
        if "managers" in st.asked.sections:  # whether they answer decides: asked afresh
            st.dirty.add("managers")
        runner.ensure_facts(st, _swarm_needs())
    if runner.options.check and any(not st.typed.docker.running for st in members.values()):
        # docker comes with this very run: say what would happen once it runs
        out = {}
        for name in members:
            what = (
                f"init the swarm and create overlay {args['network']}"
                if name == trainer_name
                else f"join the swarm of {trainer_name}"
            )
            out[name] = TaskResult(task.name, "changed", f"would {what} (once docker runs)")
        return out
    decision = plan_swarm(
        trainer_name,
        {n: st.typed for n, st in members.items()},
        args["network"],
        args["subnet"],
        args["encrypted"],
    )
    results: dict[str, TaskResult] = {}
    changed: dict[str, list[str]] = {n: [] for n in members}
    for name, err in decision.errors.items():
        results[name] = TaskResult(task.name, "failed", f"{name}: swarm: {err}")
    if trainer_name in decision.errors:
        return {
            n: results.get(
                n,
                TaskResult(
                    task.name,
                    "failed",
                    f"the trainer cannot lead a swarm: {decision.errors[trainer_name]}",
                ),
            )
            for n in members
        }
    phases = swarm_phases(
        trainer_name,
        {n: (st.host, st.typed) for n, st in members.items()},
        decision,
        args,
    )
    check = runner.options.check
    failed = run_phases(phases, members, task, changed, check)
    results.update({n: r for n, r in failed.items() if n not in results})
    if decision.network_error:
        results[trainer_name] = TaskResult(
            task.name, "failed", f"{trainer_name}: {decision.network_error}"
        )
    for name in members:
        if name in results:
            continue
        done = changed[name]
        status = "changed" if done else "ok"
        prefix = "would " if check and done else ""
        results[name] = TaskResult(task.name, status, prefix + "; ".join(done))
    return results


def run_phases(
    phases: list[Phase],
    members: dict[str, HostState],
    task: Task,
    changed: dict[str, list[str]],
    check: bool,
) -> dict[str, TaskResult]:
    """Runs a fleet task's phases in order, each phase's hosts side by side and each host's
    steps in turn. A Late value is bound when a step needs it, from the stdout of the step
    that captured it, and a secret one is held as a Secret: masked in what is shown, never
    echoed, passed on stdin. In check mode nothing runs: every step's change is said. A
    fatal step that fails ends the task (its host's result says why); another ends only its
    own host's later steps. Returns the failed hosts' results."""
    bound: dict[Late, Secret | str] = {}
    failed: dict[str, TaskResult] = {}
    for phase in phases:
        if check:
            for step in phase:
                if step.says:
                    changed[step.reports or step.host].append(step.says)
            continue
        by_host: dict[str, list[FleetStep]] = {}
        for step in phase:
            by_host.setdefault(step.host, []).append(step)

        def one(host: Any, by_host: dict[str, list[FleetStep]] = by_host) -> None:
            st = members[host.name]
            for step in by_host[host.name]:
                unknown = sorted(x.name for x in step.needs() - set(bound))
                if unknown:  # the host that was to tell it failed, and says why
                    why = f"{step.says}: {', '.join(unknown)} unknown (an earlier step failed)"
                    failed.setdefault(
                        step.reports or step.host, TaskResult(task.name, "failed", why)
                    )
                    continue
                out = st.run(
                    cmd(*(_bind(a, bound) for a in step.argv)),
                    stdin=_document(step.stdin, bound),
                    become=st.become,
                    task=task.name,
                    timeout=step.timeout,
                    prints_secret=step.secret_output
                    or bool(step.captures and step.captures.secret),
                )
                st.dirty |= set(step.dirty)
                if step.captures is not None:
                    value = out.stdout.strip()
                    bound[step.captures] = Secret(value) if step.captures.secret else value
                if step.says:
                    changed[step.reports or step.host].append(step.says)

        fatal = False
        for o in fan_out([members[h].host for h in by_host], one):
            if o.error:
                failed.setdefault(o.host.name, TaskResult(task.name, "failed", o.error.message))
                fatal = fatal or any(s.fatal for s in by_host[o.host.name])
        if fatal:
            break
    return failed


def _bind(arg: str | Late, bound: dict[Late, Secret | str]) -> str | Secret:
    if not isinstance(arg, Late):
        return arg
    return bound[arg]


def _document(doc: dict[str, Any] | None, bound: dict[Late, Secret | str]) -> bytes | None:
    """The JSON document a step sends on stdin, its Late values bound (never logged)."""
    if doc is None:
        return None
    values = {
        k: (lambda v: v.value if isinstance(v, Secret) else v)(bound[v])
        if isinstance(v, Late)
        else v
        for k, v in doc.items()
    }
    return json.dumps(values).encode()


def _swarm_needs() -> Any:
    from drfleet.playbook.model import Needs

    return Needs({"docker", "net", "networks", "nodes", "ipsec", "managers"})

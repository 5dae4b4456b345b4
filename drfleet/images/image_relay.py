"""An image from the controller's docker into many hosts at the cost of one copy: the controller
streams one `docker save` archive, cut down to the layers some receiving host lacks, into the
first host; each host loads it while passing it on over SSH to the next (drfleet/data/relay.py).
A host that did not end with the right image id is left to the caller (a direct copy).

Decisions (which layers, the order, the hops' settings) are pure functions; the I/O is the
four steps of `send`: ask each host what it holds, prepare the hops, stream, clean up."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from drfleet.errors import DrfleetError
from drfleet.hosts.remote import fan_out
from drfleet.images import image_layers, localdocker
from drfleet.images.relay_trust import (
    EXPIRY,
    IDENTITY_OF,
    RELAY_DIR,
    TAGS,
    RelayPrepared,
    prepared_from,
    tags_of,
    verdict,
    well_formed_key,
)
from drfleet.localfs import atomic_write, cache_dir
from drfleet.progress import Meter
from drfleet.shell import cmd

if TYPE_CHECKING:
    from drfleet.hosts.inventory import Host
    from drfleet.playbook.hoststate import HostState

# the layers each image a host has, and docker's storage driver (the first line)
HOLDINGS = (
    "docker info --format '{{.Driver}}' && docker image ls -aq --no-trunc | sort -u"
    " | xargs -r docker image inspect --format '{{json .RootFS.Layers}}'"
)
# drivers of docker's classic layer store, where `docker load` skips the layers it has
CLASSIC = frozenset({"overlay2", "btrfs", "zfs", "devicemapper", "vfs", "aufs", "fuse-overlayfs"})
PREPARE = (
    'd=$(mktemp -d /tmp/drfleet-relay.XXXXXXXX) && cat > "$d/relay.py"'
    ' && exec python3 -S "$d/relay.py" prepare "$d" "$1"'
)


@dataclass(frozen=True)
class Hop:
    """One host in the chain, as the controller learned it."""

    name: str
    address: str  # where the previous host reaches its sshd
    port: int
    user: str
    sudo: bool  # docker needs `sudo -n` there
    key: tuple[str, str]  # its host key as the controller verified it


def setups(
    hops: Sequence[Hop], prepared: Sequence[RelayPrepared], image: str, image_id: str
) -> list[dict[str, Any]]:
    """What `relay.py setup` gets on each host: its settings, the next hop's host key, and the
    authorized_keys entry that lets the previous host in (to that command only, until the
    expiry)."""
    out = []
    for i, (hop, prep) in enumerate(zip(hops, prepared, strict=True)):
        nxt = hops[i + 1] if i + 1 < len(hops) else None
        conf: dict[str, Any] = {"host": hop.name, "image": image, "id": image_id, "sudo": hop.sudo}
        given: dict[str, Any] = {"conf": conf}
        if nxt is not None:
            conf["next"] = {
                "host": nxt.name,
                "alias": nxt.name,
                "address": nxt.address,
                "port": nxt.port,
                "user": nxt.user,
            }
            given["known_hosts"] = f"{nxt.name} {nxt.key[0]} {nxt.key[1]}"
        if i > 0:
            pub = prepared[i - 1].pub
            assert pub is not None and well_formed_key(pub)
            assert RELAY_DIR.fullmatch(prep.dir) and EXPIRY.fullmatch(prep.expiry)
            command = f"python3 -S {prep.dir}/relay.py run {prep.dir}"
            given["authorize"] = (
                f'restrict,command="{command}",expiry-time="{prep.expiry}" {pub[0]} {pub[1]}'
            )
        out.append(given)
    return out


def order(names: Sequence[str], has_ssh: dict[str, bool]) -> tuple[list[str], list[str]]:
    """The chain (hosts that can pass it on first; one that cannot may end it) and the hosts
    left out of it."""
    able = [n for n in names if has_ssh.get(n)]
    unable = [n for n in names if not has_ssh.get(n)]
    return able + unable[:1], unable[1:]


@dataclass
class RelayOutcome:
    """Per host, as the chain reports it: bytes received and the error it names. Progress and
    reasons only: whether a host has the image is read from that host itself (verdict)."""

    meters: dict[str, Meter]
    errors: dict[str, str] = field(default_factory=dict)
    sent: int = 0  # bytes that left the controller

    def feed(self, line: str) -> str | None:
        """Takes one line of the chain's report; returns the host it was about."""
        try:
            event = json.loads(line)
            name = str(event["host"])
            got = int(event.get("bytes", 0))
        except (ValueError, KeyError, TypeError):
            return None
        if name not in self.meters:
            return None
        if "bytes" in event:
            self.meters[name].done = max(0, got)
        if event.get("error"):
            self.errors[name] = str(event["error"])[:400]
        return name

    def failed(self, verdicts: dict[str, str | None]) -> dict[str, str]:
        """The hosts whose own check failed, each with why (the chain's word for it when it
        had one)."""
        return {
            n: why if n not in self.errors else f"{self.errors[n]}; {why}"
            for n, why in verdicts.items()
            if why is not None
        }


def archive(image: str, need: frozenset[str], v1: dict[str, str]) -> Iterator[bytes]:
    """`docker save` with the layer files nobody needs left out."""

    def keep(member: image_layers.Member) -> bool:
        diff = image_layers.layer_of(member.name, v1)
        return member.kind not in image_layers.FILES or diff is None or diff in need

    return image_layers.cut(localdocker.save(image), keep)


def _legacy_index(image: str, image_id: str) -> tuple[dict[str, str | None], dict[str, int]]:
    """A pre-25 archive's v1 directories (each one's parent) and layer sizes: one pass of
    `docker save` over the whole image, kept per image id in the user's cache (an image id
    names its content, so what is kept never goes stale)."""
    kept = cache_dir() / "image-archives" / f"{image_id.split(':')[-1]}.json"
    try:
        doc = json.loads(kept.read_text())
        return dict(doc["parents"]), {k: int(v) for k, v in doc["sizes"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    parents, sizes = image_layers.parents_of(localdocker.save(image))
    with contextlib.suppress(OSError):  # a cache that cannot be written costs a pass next time
        kept.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(kept, json.dumps({"parents": parents, "sizes": sizes}))
    return parents, sizes


def _holdings(st: HostState, diff_ids: list[str]) -> int:
    assert st.session is not None
    out = st.session.run(cmd("sh", "-c", HOLDINGS), become=st.become, timeout=120).stdout
    first, _, rest = out.partition("\n")
    if first.strip() not in CLASSIC:  # containerd's image store: send every layer
        return 0
    return image_layers.held(diff_ids, (json.loads(line) for line in rest.splitlines() if line))


def hop_of(st: HostState, address: str) -> Hop:
    session = st.session
    assert session is not None
    key = session.host_key()
    if key is None:
        raise DrfleetError("not reached over SSH", where=st.host.name)
    become = st.host.become if st.become is None else st.become
    return Hop(
        st.host.name,
        address,
        st.host.ssh_port,
        st.host.ssh_user or "root",
        bool(become) and not session.is_root,
        key,
    )


def why_not(st: HostState) -> str | None:
    """Why a host cannot take part (None: it can): it must be reached over SSH, and its sudo
    must need no password (the relay runs `sudo -n docker load` on its own)."""
    session = st.session
    if session is None or session.host_key() is None:
        return "not reached over SSH"
    if session.sudo_wants_password:
        return "sudo there wants a password"
    return None


def send(
    states: Sequence[HostState],
    addresses: dict[str, str],
    image: str,
    tick: Callable[[str, str], None],
    limit: int = 16,
) -> tuple[dict[str, str], int]:
    """Puts image on every host of states (in that order); returns the hosts that did not end
    with it, each with why, and the bytes that left this machine. tick(host, line): progress."""
    image_id, diff_ids, oci = localdocker.layers(image)
    by_name = {st.host.name: st for st in states}
    held = fan_out(
        [st.host for st in states], lambda h: _holdings(by_name[h.name], diff_ids), limit=limit
    )
    failed = {o.host.name: o.error.message for o in held if o.error is not None}
    ready = [o.host.name for o in held if o.error is None]
    need = image_layers.needed(diff_ids, (o.value or 0 for o in held if o.error is None))
    if not ready:
        return failed, 0
    v1: dict[str, str] = {}
    total: int | None = localdocker.size(image)
    if not oci and len(need) < len(diff_ids):  # the old archive names its layers by v1 id
        parents, sizes = _legacy_index(image, image_id)
        v1 = image_layers.legacy_layers(parents, diff_ids)
        total = sum(s for d, s in sizes.items() if v1.get(d) in need)
    elif oci and len(need) < len(diff_ids):
        total = None  # the layers' sizes are known only as they pass
    relay = resources.files("drfleet").joinpath("data/relay.py").read_bytes()
    prepared: dict[str, RelayPrepared] = {}

    def prepare(name: str) -> RelayPrepared:
        st = by_name[name]
        assert st.session is not None
        out = st.session.run(
            cmd("sh", "-c", PREPARE, "sh", "key"), stdin=relay, timeout=60, become=False
        )
        lines = out.stdout.strip().splitlines()
        return prepared_from(lines[-1] if lines else "", name)

    for o in fan_out([by_name[n].host for n in ready], lambda h: prepare(h.name), limit=limit):
        if o.error is not None or o.value is None:
            failed[o.host.name] = o.error.message if o.error else "could not prepare the relay"
        else:
            prepared[o.host.name] = o.value
    chain, left = order(
        [n for n in ready if n in prepared], {n: p.ssh for n, p in prepared.items()}
    )
    for n in left:
        failed[n] = "no ssh client to pass the image on"
    sent = 0
    try:
        if chain:
            lost, sent = _stream(
                chain, by_name, addresses, prepared, image, image_id, need, v1, total, tick
            )
            failed.update(lost)
    finally:
        _cleanup(by_name, prepared, relay, limit)
    return failed, sent


def _stream(
    chain: list[str],
    by_name: dict[str, HostState],
    addresses: dict[str, str],
    prepared: dict[str, RelayPrepared],
    image: str,
    image_id: str,
    need: frozenset[str],
    v1: dict[str, str],
    total: int | None,
    tick: Callable[[str, str], None],
) -> tuple[dict[str, str], int]:
    hops = [hop_of(by_name[n], addresses[n]) for n in chain]
    given = setups(hops, [prepared[n] for n in chain], image, image_id)
    for name, payload in zip(chain, given, strict=True):
        st = by_name[name]
        assert st.session is not None
        d = prepared[name].dir
        st.session.run(
            cmd("python3", "-S", f"{d}/relay.py", "setup", d),
            stdin=json.dumps(payload),
            timeout=60,
            become=False,
        )
    before = _tags(chain, by_name)
    outcome = RelayOutcome({n: Meter(total) for n in chain})
    lock = threading.Lock()

    def line(text: str) -> None:
        with lock:
            name = outcome.feed(text)
        if name is not None:
            tick(name, outcome.meters[name].line())

    def counted(chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            outcome.sent += len(chunk)
            yield chunk

    first = by_name[chain[0]]
    assert first.session is not None
    d = prepared[chain[0]].dir
    try:
        result = first.session.run(
            cmd("python3", "-S", f"{d}/relay.py", "run", d),
            stdin=counted(archive(image, need, v1)),
            timeout=6 * 3600,
            lines=line,
            check=False,
            become=False,  # the relay runs as the login user, as the next hops' do
        )
        if result.exit_code != 0:
            for n in chain:
                outcome.errors.setdefault(
                    n, f"the relay on {chain[0]} exited {result.exit_code}: {result.stderr[-300:]}"
                )
    except DrfleetError as exc:
        for n in chain:
            outcome.errors.setdefault(n, exc.message)
    expected = localdocker.identities({image})[image] or ""
    return outcome.failed(_verdicts(chain, by_name, before, image, expected)), outcome.sent


def _tags(chain: list[str], by_name: dict[str, HostState]) -> dict[str, dict[str, str] | None]:
    """Each host's tags, read over its own session (None: they could not be read)."""

    def one(host: Host) -> dict[str, str]:
        st = by_name[host.name]
        assert st.session is not None
        out = st.session.run(cmd("sh", "-c", TAGS), become=st.become, timeout=120)
        return tags_of(out.stdout)

    done = fan_out([by_name[n].host for n in chain], one)
    return {o.host.name: o.value if o.error is None else None for o in done}


def _identities(chain: list[str], by_name: dict[str, HostState], image: str) -> dict[str, str]:
    """Each host's identity of the image (probe.identity), read over its own session."""

    def one(host: Host) -> str:
        st = by_name[host.name]
        assert st.session is not None
        out = st.session.run(
            cmd("python3", "-c", IDENTITY_OF, image), become=st.become, timeout=120
        )
        return out.stdout.strip()

    done = fan_out([by_name[n].host for n in chain], one)
    return {o.host.name: o.value or "" for o in done if o.error is None}


def _verdicts(
    chain: list[str],
    by_name: dict[str, HostState],
    before: dict[str, dict[str, str] | None],
    image: str,
    expected: str,
) -> dict[str, str | None]:
    """Each host's own word on the load (never another host's): its tags after against
    before, and the image's identity there; tags an archive set that it was not sent are
    put back."""
    after = _tags(chain, by_name)
    seen = _identities(chain, by_name, image)
    out: dict[str, str | None] = {}
    for name in chain:
        was, now = before.get(name), after.get(name)
        if was is None or now is None:
            out[name] = "its tags could not be read to check the load"
            continue
        why, undo = verdict(was, now, image, expected, seen.get(name))
        out[name] = why
        st = by_name[name]
        assert st.session is not None
        for c in undo:
            st.session.run(c, become=st.become, timeout=120, check=False)
    return out


def _cleanup(
    by_name: dict[str, HostState], prepared: dict[str, RelayPrepared], relay: bytes, limit: int
) -> None:
    """What a relay that never ran left: its directory and authorized_keys entry."""

    def one(name: str) -> None:
        st = by_name[name]
        assert st.session is not None
        d = prepared[name].dir
        st.session.run(
            cmd("python3", "-S", "-", "cleanup", d),
            stdin=relay,
            timeout=60,
            check=False,
            become=False,
        )

    fan_out([by_name[n].host for n in prepared], lambda h: one(h.name), limit=limit)

"""What the controller takes from a host in an image relay, and only when it holds: a host
may be compromised, and what it says goes into the next host's authorized_keys or decides
whether that host gets the image another way. Pure."""

from __future__ import annotations

import base64
import datetime
import json
import re
import struct
from dataclasses import dataclass
from typing import Any

from drfleet.errors import DrfleetError
from drfleet.hosts import probe
from drfleet.shell import Command, cmd

# every tag a host has and the image it names, read by the controller over that host's own
# session before and after the load (what the chain says of a host is progress, never proof)
TAGS = "docker image ls --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}'"
RELAY_DIR = re.compile(r"/tmp/drfleet-relay\.[A-Za-z0-9]{8}")
EXPIRY = re.compile(r"[0-9]{14}Z")  # sshd's YYYYMMDDHHMMSS, in UTC
KEY_TYPE = "ssh-ed25519"  # the one type relay.py makes
KEY_B64 = re.compile(r"[A-Za-z0-9+/]{68}")  # 51 bytes: no padding


@dataclass
class RelayPrepared:
    dir: str
    pub: list[str] | None
    expiry: str
    ssh: bool


def prepared_from(line: str, host: str) -> RelayPrepared:
    """What a host's `prepare` printed, taken only when every field is well-formed: its key
    and expiry go into the next host's authorized_keys, and a host that could add a line
    break or an option there would plant a key of its own, unrestricted."""

    def bad(what: str) -> DrfleetError:
        return DrfleetError(
            f"the relay's preparation sent {what}; it is not used",
            where=host,
            fix="check the host (its python3 and ssh-keygen); the image is copied to it directly",
        )

    try:
        doc = json.loads(line)
    except ValueError:
        raise bad("no JSON") from None
    if not isinstance(doc, dict):
        raise bad("no JSON object")
    d, pub, expiry, ssh = doc.get("dir"), doc.get("pub"), doc.get("expiry"), doc.get("ssh")
    if not isinstance(d, str) or not RELAY_DIR.fullmatch(d):
        raise bad(f"a directory that is not the relay's: {d!r}")
    if not isinstance(expiry, str) or not EXPIRY.fullmatch(expiry) or not _a_time(expiry):
        raise bad(f"an expiry that is not a UTC time YYYYMMDDHHMMSSZ: {expiry!r}")
    if pub is not None and not well_formed_key(pub):
        raise bad("a public key that is not one well-formed ssh-ed25519 key")
    if not isinstance(ssh, bool):
        raise bad(f"ssh that is not true or false: {ssh!r}")
    return RelayPrepared(d, list(pub) if pub is not None else None, expiry, ssh)


def _a_time(expiry: str) -> bool:
    try:
        datetime.datetime.strptime(expiry[:-1], "%Y%m%d%H%M%S")
    except ValueError:
        return False
    return True


def well_formed_key(pub: Any) -> bool:
    """[type, base64]: one ssh-ed25519 key, strict base64 of exactly the blob OpenSSH writes
    (its type again, then 32 bytes), nothing else."""
    if not (isinstance(pub, list) and len(pub) == 2 and all(isinstance(p, str) for p in pub)):
        return False
    kind, b64 = pub
    if kind != KEY_TYPE or not KEY_B64.fullmatch(b64):
        return False
    try:
        blob = base64.b64decode(b64, validate=True)
    except ValueError:
        return False
    name = KEY_TYPE.encode()
    head = struct.pack(">I", len(name)) + name + struct.pack(">I", 32)
    return len(blob) == len(head) + 32 and blob.startswith(head)


def tags_of(text: str) -> dict[str, str]:
    """TAGS' output as {repository:tag: image id}; untagged images left out."""
    out = {}
    for line in text.splitlines():
        name, _, image_id = line.strip().rpartition(" ")
        if name and "<none>" not in name:
            out[name] = image_id
    return out


# The identity (probe.identity) of the image named in argv[1] on this host, or nothing.
IDENTITY_OF = (
    probe.identity_source()
    + """\
import subprocess, sys
out = subprocess.run(["docker", "image", "inspect", sys.argv[1]],
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
if out.returncode == 0:
    print(identity(json.loads(out.stdout.decode())[0]))
"""
)


def verdict(
    before: dict[str, str],
    after: dict[str, str],
    image: str,
    expected: str,
    seen: str | None,
) -> tuple[str | None, list[Command]]:
    """Whether a host's load holds, read from its own tags and image: the image is the one
    sent (`seen`, its identity there, is the controller's `expected`: its id is the
    controller's only where both use docker's classic image store), and no other tag
    appeared or moved (an archive may tag anything it carries). The reason it does not
    (None: it does) and the commands that put the other tags back."""
    got = after.get(image)
    moved = sorted(t for t, i in after.items() if t != image and before.get(t) != i)
    undo: list[Command] = []
    for t in moved:
        old = before.get(t)
        undo.append(cmd("docker", "tag", old, t) if old else cmd("docker", "rmi", t))
    if moved:
        return f"the archive it loaded set tags it was not sent: {', '.join(moved)}", undo
    if not got:
        return f"after the load there is no {image}", undo
    if seen != expected:
        return f"after the load {image} is {seen or 'unreadable'}, not {expected}", undo
    return None, undo

"""Which of an image's layers a fleet lacks, and a `docker save` archive cut down to them.

docker keeps layers as chains: layer i of an image is present on a host when some image there
has the same first i+1 layers (diff ids), and `docker load` skips a layer whose chain it has
without opening its file (moby image/tarexport/load.go: `lss.Get(ChainID)` before
`loadLayer`). So an archive that leaves out the files of the layers every receiving host holds
loads as the whole one does, and the image id, which docker computes from the config that
names every diff id, proves the result.

Two archive shapes exist (moby image/tarexport/save.go): Docker 25+ writes an OCI layout whose
layer files are `blobs/sha256/<diff id>`; older engines write `<v1 id>/layer.tar`, where the
v1 id is a hash of the layer's `json` (which names its `parent`), so the position of a
directory in the image is known only from the chain of parents. Pure: bytes in, bytes out."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

BLOCK = 512
FILES = (b"0", b"\0", b"7")  # tar typeflags of members with data


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """docker's ChainID of each prefix: the first layer's diff id, then
    sha256(parent chain id + " " + diff id) (moby layer/layer.go CreateChainID)."""
    out: list[str] = []
    for diff in diff_ids:
        if not out:
            out.append(diff)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff}".encode()).hexdigest())
    return out


def held(diff_ids: Sequence[str], host_images: Iterable[Sequence[str]]) -> int:
    """How many of the image's first layers a host holds, from the layer lists of the images
    it has (a chain is there while an image uses it)."""
    best = 0
    for layers in host_images:
        n = 0
        for mine, theirs in zip(diff_ids, layers, strict=False):
            if mine != theirs:
                break
            n += 1
        best = max(best, n)
    return best


def needed(diff_ids: Sequence[str], holdings: Iterable[int]) -> frozenset[str]:
    """The diff ids whose files the archive must carry for hosts that hold the first
    `holdings` layers each (a layer file serves every position with its diff id)."""
    least = min(holdings, default=0)
    return frozenset(diff_ids[least:])


@dataclass(frozen=True)
class Member:
    name: str
    kind: bytes  # tar typeflag
    size: int


def _octal(field: bytes) -> int:
    if field and field[0] & 0x80:  # GNU base-256 for sizes over 8 GiB
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _pax(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    while data:
        length = int(data.split(b" ", 1)[0])
        record, data = data[:length], data[length:]
        key, _, value = record.split(b" ", 1)[1].rstrip(b"\n").partition(b"=")
        out[key.decode()] = value.decode("utf-8", "replace")
    return out


class _Reader:
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = iter(chunks)
        self.buf = bytearray()

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = next(self.chunks, None)
            if chunk is None:
                raise ValueError("the image archive ended in the middle of a file")
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def rest(self) -> Iterator[bytes]:
        if self.buf:
            yield bytes(self.buf)
            self.buf.clear()
        yield from self.chunks

    def pieces(self, n: int) -> Iterator[bytes]:
        """n bytes as they come, without holding them all."""
        while n > 0:
            if not self.buf:
                chunk = next(self.chunks, None)
                if chunk is None:
                    raise ValueError("the image archive ended in the middle of a file")
                self.buf += chunk
            take = min(n, len(self.buf))
            yield bytes(self.buf[:take])
            del self.buf[:take]
            n -= take


def members(chunks: Iterable[bytes]) -> Iterator[tuple[Member, bytes, Iterator[bytes]]]:
    """Each member of a tar stream: what it is, its raw header blocks (PAX or GNU long-name
    records included), and its data blocks with padding, to pass on or drain. The end blocks
    come last as a member named ''."""
    src = _Reader(chunks)
    while True:
        header = src.exact(BLOCK)
        if header == b"\0" * BLOCK:
            yield Member("", b"", 0), header, src.rest()
            return
        raw, overrides = header, {}
        while header[156:157] in (b"x", b"L", b"g"):
            size = _octal(header[124:136])
            body = src.exact(-(-size // BLOCK) * BLOCK)
            if header[156:157] == b"x":
                overrides.update(_pax(body[:size]))
            elif header[156:157] == b"L":
                overrides["path"] = body[:size].rstrip(b"\0").decode("utf-8", "replace")
            header = src.exact(BLOCK)
            raw += body + header
        name = overrides.get("path") or _name(header)
        size = int(overrides.get("size") or _octal(header[124:136]))
        member = Member(name, header[156:157], size)
        yield member, raw, src.pieces(-(-size // BLOCK) * BLOCK if member.kind in FILES else 0)


def _name(header: bytes) -> str:
    name = header[0:100].split(b"\0", 1)[0]
    prefix = header[345:500].split(b"\0", 1)[0] if header[257:262] == b"ustar" else b""
    return (prefix + b"/" + name if prefix else name).decode("utf-8", "replace")


def layer_of(name: str, v1_layers: dict[str, str]) -> str | None:
    """The diff id whose layer file a member is, or None for anything else. v1_layers: a
    pre-25 archive's `<v1 id>` directories and their diff ids (from `legacy_layers`)."""
    if name.startswith("blobs/sha256/"):
        return "sha256:" + name.rsplit("/", 1)[1]
    if name.endswith("/layer.tar"):
        return v1_layers.get(name.split("/", 1)[0])
    return None


def is_legacy(first: str) -> bool:
    """From its first member: a pre-25 archive (`<v1 id>/...`), not an OCI layout."""
    return first not in ("", "oci-layout", "index.json") and not first.startswith("blobs")


def legacy_layers(parents: dict[str, str | None], diff_ids: Sequence[str]) -> dict[str, str]:
    """v1 directory -> diff id, from each directory's `parent` (its json): the root layer has
    none, and each next layer names the one before it."""
    children = {p: d for d, p in parents.items() if p}
    roots = [d for d, p in parents.items() if not p]
    if len(roots) != 1:
        raise ValueError(f"the image archive has {len(roots)} root layers, not one")
    out, cur = {}, roots[0]
    for diff in diff_ids:
        out[cur] = diff
        nxt = children.get(cur)
        if nxt is None:
            break
        cur = nxt
    if len(out) != len(diff_ids):
        raise ValueError("the image archive's layers do not match the image")
    return out


def parents_of(chunks: Iterable[bytes]) -> tuple[dict[str, str | None], dict[str, int]]:
    """From a pre-25 archive: each v1 directory's parent, and each layer file's size."""
    parents: dict[str, str | None] = {}
    sizes: dict[str, int] = {}
    for member, _raw, data in members(chunks):
        if member.name.endswith("/json") and member.name.count("/") == 1:
            body = b"".join(data)[: member.size]
            parents[member.name.split("/")[0]] = json.loads(body).get("parent") or None
            continue
        if member.name.endswith("/layer.tar") and member.kind in FILES:
            sizes[member.name.split("/")[0]] = member.size
        for _ in data:
            pass
    return parents, sizes


def cut(chunks: Iterable[bytes], keep: Callable[[Member], bool]) -> Iterator[bytes]:
    """The archive with only the members keep() accepts, each passed on byte for byte."""
    for member, raw, data in members(chunks):
        if member.name == "" or keep(member):
            yield raw
            yield from data
        else:
            for _ in data:
                pass

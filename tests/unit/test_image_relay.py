"""The pure core of the image relay: which layers a fleet lacks, a docker save archive cut down
to them (byte for byte what is kept), and each hop's settings."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from drfleet import image_layers as L
from drfleet.image_relay import Hop, Outcome, Prepared, order, setups
from drfleet.progress import Meter


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_chain_ids_follow_docker() -> None:
    a, b = _sha(b"a"), _sha(b"b")
    assert L.chain_ids([a, b]) == [a, _sha(f"{a} {b}".encode())]


def test_a_host_holds_the_longest_prefix_any_of_its_images_shares() -> None:
    image = ["l1", "l2", "l3", "l4"]
    assert L.held(image, [["l1", "l2", "x"], ["l1"], ["l1", "l2", "l3"]]) == 3
    assert L.held(image, [["l2", "l3"]]) == 0  # same layers, other chain: docker has neither
    assert L.held(image, []) == 0
    assert L.needed(image, [3, 1, 4]) == {"l2", "l3", "l4"}
    assert L.needed(image, [4]) == frozenset()
    assert L.needed(["d", "x", "d"], [2]) == {"d"}  # one file serves both places


def _tar(members: list[tuple[str, bytes]], *, pax: bool = False) -> bytes:
    buf = io.BytesIO()
    fmt = tarfile.PAX_FORMAT if pax else tarfile.USTAR_FORMAT
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE
            else:
                info.size = len(data)
            if pax:
                info.pax_headers = {"comment": "x" * 300}
            tar.addfile(info, io.BytesIO(data) if not name.endswith("/") else None)
    return buf.getvalue()


def _chunks(data: bytes, n: int) -> list[bytes]:
    return [data[i : i + n] for i in range(0, len(data), n)]


@pytest.mark.parametrize("pax", [False, True])
@pytest.mark.parametrize("n", [1, 511, 512, 7000, 1 << 20])
def test_cutting_nothing_passes_the_archive_byte_for_byte(pax: bool, n: int) -> None:
    data = _tar([("a/", b""), ("a/layer.tar", b"x" * 1000), ("manifest.json", b"[]")], pax=pax)
    assert b"".join(L.cut(_chunks(data, n), lambda m: True)) == data


def _legacy(layers: list[bytes]) -> tuple[bytes, list[str], list[str]]:
    """An archive shaped as docker 20.10 saves it: v1 directories in hash order, each a VERSION,
    a json naming its parent, and layer.tar; then the config, manifest.json."""
    diffs = [_sha(x) for x in layers]
    v1 = [hashlib.sha256(f"v1-{i}".encode()).hexdigest() for i in range(len(layers))]
    entries: list[tuple[str, bytes]] = []
    for i in sorted(range(len(layers)), key=lambda i: v1[i]):
        meta = {"id": v1[i], **({"parent": v1[i - 1]} if i else {})}
        entries += [
            (f"{v1[i]}/", b""),
            (f"{v1[i]}/VERSION", b"1.0"),
            (f"{v1[i]}/json", json.dumps(meta).encode()),
            (f"{v1[i]}/layer.tar", layers[i]),
        ]
    manifest = [{"Config": "c.json", "Layers": [f"{v}/layer.tar" for v in v1]}]
    entries += [("c.json", b"{}"), ("manifest.json", json.dumps(manifest).encode())]
    return _tar(entries), diffs, v1


def test_a_legacy_archive_keeps_only_the_layers_asked_for() -> None:
    layers = [b"base" * 3000, b"middle" * 500, b"top" * 700]
    data, diffs, v1 = _legacy(layers)
    parents, sizes = L.parents_of(_chunks(data, 4096))
    mapping = L.legacy_layers(parents, diffs)
    assert mapping == dict(zip(v1, diffs, strict=True))
    assert sizes[v1[0]] == len(layers[0])
    need = L.needed(diffs, [2, 2])

    def keep(m: L.Member) -> bool:
        diff = L.layer_of(m.name, mapping)
        return m.kind not in L.FILES or diff is None or diff in need

    out = b"".join(L.cut(_chunks(data, 1000), keep))
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        names = tar.getnames()
        assert f"{v1[2]}/layer.tar" in names and "manifest.json" in names
        assert f"{v1[0]}/layer.tar" not in names and f"{v1[1]}/layer.tar" not in names
        assert f"{v1[0]}/json" in names  # the small files stay
        top = tar.extractfile(f"{v1[2]}/layer.tar")
        assert top is not None and top.read() == layers[2]
    assert len(out) < len(data) - len(layers[0])


def test_an_oci_archive_names_its_layers_by_digest() -> None:
    assert L.layer_of("blobs/sha256/ab12", {}) == "sha256:ab12"
    assert L.layer_of("abc/layer.tar", {}) is None  # unknown: kept
    assert not L.is_legacy("blobs/") and not L.is_legacy("oci-layout")
    assert L.is_legacy("00daf8f9509b/")


def test_a_broken_archive_is_an_error_not_a_short_image() -> None:
    data, _diffs, _v1 = _legacy([b"x" * 5000])
    with pytest.raises(ValueError, match="ended in the middle"):
        b"".join(L.cut([data[:3000]], lambda m: True))
    with pytest.raises(ValueError, match="root layers"):
        L.legacy_layers({"a": None, "b": None}, ["d1", "d2"])


def _hops() -> list[Hop]:
    return [
        Hop(f"h{i}", f"10.0.0.{i}", 22, "fleet", True, ("ssh-ed25519", f"KEY{i}"))
        for i in (1, 2, 3)
    ]


def test_each_hop_knows_the_next_hosts_key_and_lets_only_the_previous_in() -> None:
    prepared = [
        Prepared(f"/tmp/drfleet-relay.{i}", ["ssh-ed25519", f"PUB{i}"], "20261201010000", True)
        for i in (1, 2, 3)
    ]
    given = setups(_hops(), prepared, "img:1", "sha256:ab")
    assert given[0]["conf"]["next"] == {
        "host": "h2",
        "alias": "h2",
        "address": "10.0.0.2",
        "port": 22,
        "user": "fleet",
    }
    assert given[0]["known_hosts"] == "h2 ssh-ed25519 KEY2\n"
    assert "authorize" not in given[0]  # the controller starts the first
    assert given[1]["authorize"] == (
        'restrict,command="python3 -S /tmp/drfleet-relay.2/relay.py run /tmp/drfleet-relay.2",'
        'expiry-time="20261201010000" ssh-ed25519 PUB1'
    )
    assert "next" not in given[2]["conf"] and "known_hosts" not in given[2]
    assert all(g["conf"]["id"] == "sha256:ab" and g["conf"]["sudo"] for g in given)


def test_hosts_without_an_ssh_client_end_the_chain_or_wait_for_a_direct_copy() -> None:
    assert order(["a", "b", "c", "d"], {"a": False, "b": True, "c": False, "d": True}) == (
        ["b", "d", "a"],
        ["c"],
    )


def test_the_chains_report_ends_each_host_once_with_the_right_id() -> None:
    out = Outcome({"h1": Meter(100), "h2": Meter(100), "h3": Meter(100)})
    for line in [
        '{"host": "h1", "bytes": 50}',
        "not json",
        '{"host": "elsewhere", "bytes": 1}',
        '{"host": "h1", "bytes": 100, "done": true, "id": "sha256:ab", "error": null}',
        '{"host": "h2", "bytes": 100, "done": true, "id": "sha256:zz", "error": "wrong id"}',
        '{"host": "h3", "error": "the relay to it stopped reading"}',
    ]:
        out.feed(line, "sha256:ab")
    assert out.meters["h1"].done == 100
    assert out.failed(["h1", "h2", "h3"]) == {
        "h2": "wrong id",
        "h3": "the relay to it stopped reading",
    }

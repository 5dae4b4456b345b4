"""The pure core of the image relay: which layers a fleet lacks, a docker save archive cut down
to them (byte for byte what is kept), and each hop's settings."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from drfleet.errors import DrfleetError
from drfleet.images import image_layers as L
from drfleet.images.image_relay import Hop, RelayOutcome, order, setups
from drfleet.images.relay_trust import RelayPrepared, prepared_from, tags_of, verdict
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


def _key(n: int = 0) -> list[str]:
    """A real ssh-ed25519 public key, as relay.py's ssh-keygen writes it."""
    blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + bytes([n]) * 32
    return ["ssh-ed25519", base64.b64encode(blob).decode()]


def test_each_hop_knows_the_next_hosts_key_and_lets_only_the_previous_in() -> None:
    prepared = [
        RelayPrepared(f"/tmp/drfleet-relay.abcdefg{i}", _key(i), "20261201010000Z", True)
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
    assert given[0]["known_hosts"] == "h2 ssh-ed25519 KEY2"  # one line; relay.py ends it
    assert "authorize" not in given[0]  # the controller starts the first
    d = "/tmp/drfleet-relay.abcdefg2"
    assert given[1]["authorize"] == (
        f'restrict,command="python3 -S {d}/relay.py run {d}",'
        f'expiry-time="20261201010000Z" {_key(1)[0]} {_key(1)[1]}'
    )
    assert "next" not in given[2]["conf"] and "known_hosts" not in given[2]
    assert all(g["conf"]["id"] == "sha256:ab" and g["conf"]["sudo"] for g in given)


def _prep(**fields: object) -> str:
    doc = {"dir": "/tmp/drfleet-relay.AbC12xyz", "pub": _key(), "expiry": "20261205093000Z",
           "ssh": True, **fields}  # fmt: skip
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("fields", "what"),
    [
        # the reproduction: a newline in the key planted a second, unrestricted entry
        ({"pub": ["ssh-ed25519", _key()[1] + "\nssh-ed25519 " + _key(7)[1]]}, "public key"),
        ({"pub": ["ssh-ed25519", _key()[1] + " evil@x"]}, "public key"),
        ({"pub": ["ssh-rsa", _key()[1]]}, "public key"),
        ({"pub": ["ssh-ed25519", _key()[1][:-4] + "!!!!"]}, "public key"),
        ({"pub": ["ssh-ed25519", base64.b64encode(b"x" * 51).decode()]}, "public key"),
        ({"pub": ["ssh-ed25519", _key()[1], "third"]}, "public key"),
        ({"pub": "ssh-ed25519 " + _key()[1]}, "public key"),
        ({"expiry": "20261205093000"}, "expiry"),  # local time: read in sshd's own zone
        ({"expiry": "20261305093000Z"}, "expiry"),
        ({"expiry": '20261205093000Z" command="sh'}, "expiry"),
        ({"dir": '/tmp/drfleet-relay.x" ,command="sh'}, "directory"),
        ({"dir": "/tmp/drfleet-relay.AbC12xyz\n"}, "directory"),
        ({"ssh": "yes"}, "ssh"),
    ],
)
def test_a_hosts_preparation_is_taken_only_when_well_formed(fields: dict, what: str) -> None:
    with pytest.raises(DrfleetError) as exc:
        prepared_from(_prep(**fields), "h2")
    assert what in exc.value.message and exc.value.where == "h2"


def test_a_well_formed_preparation_is_taken() -> None:
    p = prepared_from(_prep(), "h1")
    assert p.pub == _key() and p.expiry == "20261205093000Z" and p.ssh
    assert prepared_from(_prep(pub=None), "h1").pub is None  # the last host makes no key


def _relay_py(home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    script = Path(__file__).resolve().parents[2] / "drfleet/data/relay.py"
    return subprocess.run(
        ["python3", "-S", str(script), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(home)},
        check=False,
    )


def test_relay_setup_refuses_a_line_break_in_what_it_writes(tmp_path: Path) -> None:
    """Even from a controller that let one through: nothing is appended, the run ends."""
    d = Path(tempfile.mkdtemp(prefix="drfleet-relay.", dir="/tmp"))
    try:
        keys = tmp_path / ".ssh" / "authorized_keys"
        keys.parent.mkdir()
        keys.write_text("ssh-ed25519 AAAAmine me\n")
        for given in (
            {"conf": {}, "authorize": "restrict ssh-ed25519 AAAA\nssh-ed25519 AAAAevil"},
            {"conf": {}, "authorize": "restrict ssh-ed25519 AAAA\rssh-ed25519 AAAAevil"},
            {"conf": {}, "known_hosts": "h2 ssh-ed25519 K\n@cert-authority * ssh-ed25519 E"},
        ):
            run = _relay_py(tmp_path, "setup", str(d), stdin=json.dumps(given))
            assert run.returncode != 0 and "not one line" in run.stderr
            assert keys.read_text() == "ssh-ed25519 AAAAmine me\n"
            assert not (d / "known_hosts").exists()
        ok = {"conf": {"host": "h2"}, "authorize": "restrict ssh-ed25519 AAAAgood",
              "known_hosts": "h3 ssh-ed25519 K"}  # fmt: skip
        assert _relay_py(tmp_path, "setup", str(d), stdin=json.dumps(ok)).returncode == 0
        assert keys.read_text().splitlines() == [
            "ssh-ed25519 AAAAmine me",
            f"restrict ssh-ed25519 AAAAgood drfleet-relay:{d}",
        ]
        assert (d / "known_hosts").read_text() == "h3 ssh-ed25519 K\n"
        assert _relay_py(tmp_path, "cleanup", str(d)).returncode == 0
        assert keys.read_text() == "ssh-ed25519 AAAAmine me\n"
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_concurrent_relay_edits_of_authorized_keys_lose_no_line(tmp_path: Path) -> None:
    dirs = [Path(tempfile.mkdtemp(prefix="drfleet-relay.", dir="/tmp")) for _ in range(12)]
    try:
        (tmp_path / ".ssh").mkdir()
        keys = tmp_path / ".ssh" / "authorized_keys"
        keys.write_text("mine\n")
        script = Path(__file__).resolve().parents[2] / "drfleet/data/relay.py"
        env = {**os.environ, "HOME": str(tmp_path)}
        procs = []
        for i, d in enumerate(dirs):  # half set up, half set up and clean up at once
            given = json.dumps({"conf": {}, "authorize": f"restrict ssh-ed25519 K{i}"})
            p = subprocess.Popen(["python3", "-S", str(script), "setup", str(d)],
                                 stdin=subprocess.PIPE, env=env)  # fmt: skip
            procs.append((p, given))
        for p, given in procs:
            p.communicate(given.encode())
        cleanups = [
            subprocess.Popen(["python3", "-S", str(script), "cleanup", str(d)], env=env)
            for d in dirs[::2]
        ]
        for p in cleanups:
            p.wait()
        lines = keys.read_text().splitlines()
        assert lines[0] == "mine"
        assert sorted(lines[1:]) == sorted(
            f"restrict ssh-ed25519 K{i} drfleet-relay:{d}" for i, d in enumerate(dirs) if i % 2
        )
    finally:
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


def test_prepare_passes_over_a_dangling_link_and_others_entries_in_tmp(tmp_path: Path) -> None:
    link = Path(tempfile.mktemp(prefix="drfleet-relay.", dir="/tmp"))
    link.symlink_to(tmp_path / "gone")
    # as the controller's PREPARE makes it
    made = subprocess.run(["mktemp", "-d", "/tmp/drfleet-relay.XXXXXXXX"], capture_output=True)
    d = Path(made.stdout.decode().strip())
    try:
        old = time.time() - 3600
        os.utime(link, (old, old), follow_symlinks=False)
        run = _relay_py(tmp_path, "prepare", str(d))
        assert run.returncode == 0, run.stderr
        doc = json.loads(run.stdout)
        assert re.fullmatch(r"\d{14}Z", doc["expiry"])  # UTC, said so
        assert prepared_from(run.stdout, "h1").dir == str(d)
        assert link.is_symlink()  # not followed, not removed: never ours to touch
    finally:
        link.unlink(missing_ok=True)
        shutil.rmtree(d, ignore_errors=True)


def test_hosts_without_an_ssh_client_end_the_chain_or_wait_for_a_direct_copy() -> None:
    assert order(["a", "b", "c", "d"], {"a": False, "b": True, "c": False, "d": True}) == (
        ["b", "d", "a"],
        ["c"],
    )


def test_the_chains_report_is_progress_only_each_host_speaks_for_itself() -> None:
    """h1 says h2 and h3 are done with the right id: a lie the controller does not take; what
    counts is each host's own tags, read by the controller over that host's session."""
    out = RelayOutcome({"h1": Meter(100), "h2": Meter(100), "h3": Meter(100)})
    for line in [
        '{"host": "h1", "bytes": 50}',
        "not json",
        '{"host": "elsewhere", "bytes": 1}',
        '{"host": "h2", "bytes": 100, "done": true, "id": "sha256:ab", "error": null}',
        '{"host": "h3", "bytes": "x"}',
        '{"host": "h3", "error": "the relay to it stopped reading"}',
    ]:
        out.feed(line)
    assert out.meters["h1"].done == 50 and out.meters["h2"].done == 100
    verdicts = {"h1": None, "h2": "after the load img:1 is missing, not sha256:ab", "h3": "x"}
    assert out.failed(verdicts) == {
        "h2": "after the load img:1 is missing, not sha256:ab",
        "h3": "the relay to it stopped reading; x",
    }


def test_a_load_holds_only_with_the_right_image_and_no_tag_it_was_not_sent() -> None:
    """The right image: its identity there is the controller's (its id may differ: docker's
    containerd image store names images by their manifests)."""
    before = {"simapp:5": "sha256:old", "other:1": "sha256:o1"}
    right = {**before, "img:1": "sha256:ab"}
    assert verdict(before, right, "img:1", "content:ab", "content:ab") == (None, [])
    other_id = {**before, "img:1": "sha256:manifest"}
    assert verdict(before, other_id, "img:1", "content:ab", "content:ab") == (None, [])
    why, undo = verdict(before, right, "img:1", "content:ab", "content:evil")
    assert why == "after the load img:1 is content:evil, not content:ab" and undo == []
    why, _ = verdict(before, before, "img:1", "content:ab", None)
    assert why == "after the load there is no img:1"
    planted = {**right, "simapp:5": "sha256:evil", "new:1": "sha256:evil"}
    why, undo = verdict(before, planted, "img:1", "content:ab", "content:ab")
    assert why is not None and "new:1, simapp:5" in why
    assert [c.render() for c in undo] == [
        "docker rmi new:1",
        "docker tag sha256:old simapp:5",
    ]
    assert tags_of("img:1 sha256:ab\n<none>:<none> sha256:cd\n\n") == {"img:1": "sha256:ab"}

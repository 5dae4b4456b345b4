"""Images from the controller reach a fleet as one relayed copy (issue 17): the bytes that leave
the controller, counted on the test network's bridge (the controller's side of it: traffic
between hosts is bridged past it), are about one copy of what the hosts lack, whatever their
number; a transfer killed half-way leaves no image that docker reports, and the next run ends
with the right id on every host. On the shared three-host fleet."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.conftest import REPO, invoke, killed
from tests.testbed import TestBed
from tests.testbed.images import ensure_busybox

MB = 1 << 20


def _build(tag: str, base: str, layers: dict[str, int], workdir: Path) -> str:
    """An image on this controller: base plus a layer of random bytes per name. Returns its id."""
    workdir.mkdir(parents=True, exist_ok=True)
    lines = [f"FROM {base}"]
    for name, size in layers.items():
        (workdir / name).write_bytes(os.urandom(size))
        lines.append(f"COPY {name} /{name}")
    (workdir / "Dockerfile").write_text("\n".join(lines) + "\n")
    image, _ = docker.from_env().images.build(path=str(workdir), tag=tag, rm=True)
    return str(image.id)


def _ids(bed: TestBed, image: str) -> dict[str, str]:
    fmt = "'{{.Id}}'"
    return {
        h: bed.exec(h, f"docker image inspect --format {fmt} {image} 2>/dev/null || true").strip()
        for h in bed.hosts
    }


def _book(tmp: Path, image: str) -> Path:
    book = tmp / f"images-{image.rsplit(':', 1)[1]}.yml"
    book.write_text(
        "- name: Images\n  hosts: all\n  become: true\n  tasks:\n"
        f"    - name: Simulation images\n      docker_image:\n        images: [{image}]\n"
    )
    return book


def _args(bed: TestBed, book: Path, source: str = "controller") -> tuple[str, ...]:
    return ("provision", "-i", str(bed.inventory), "--playbook", str(book),
            "--images-from", source, "--json")  # fmt: skip


def _leftovers(bed: TestBed) -> dict[str, str]:
    return {
        h: bed.exec(h, "ls -d /tmp/drfleet-relay.* 2>/dev/null; "
                    "grep -c drfleet-relay: /home/fleet/.ssh/authorized_keys || true").strip()
        for h in bed.hosts
    }  # fmt: skip


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    work = tmp_path_factory.mktemp("relay")
    tags = {
        "base": "drfleet-test/relay:base",  # two layers of 24 MB
        "next": "drfleet-test/relay:next",  # base + one of 8 MB
        "big": "drfleet-test/relay:big",  # base + one of 160 MB, to cut in the middle
    }
    ids = {"base": _build(tags["base"], ensure_busybox(), {"a": 24 * MB, "b": 24 * MB}, work / "a")}
    ids["next"] = _build(tags["next"], tags["base"], {"c": 8 * MB}, work / "b")
    ids["big"] = _build(tags["big"], tags["base"], {"d": 160 * MB}, work / "c")
    yield {**{f"{k}:id": v for k, v in ids.items()}, **tags}
    for tag in tags.values():
        with contextlib.suppress(docker.errors.DockerException):
            docker.from_env().images.remove(tag, force=True)


def test_one_copy_leaves_the_controller_and_only_the_missing_layer_moves(
    fleet: tuple[TestBed, Path], images: dict[str, str], tmp_path: Path
) -> None:
    bed, _env = fleet
    try:
        before = bed.sent()
        run = invoke(*_args(bed, _book(tmp_path, images["base"])), cwd=REPO, timeout=600)
        sent = bed.sent() - before
        assert run.code == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert _ids(bed, images["base"]) == dict.fromkeys(bed.hosts, images["base:id"])
        for h in bed.hosts:
            msg = run.json["hosts"][h]["tasks"][-1]["msg"]
            assert "relayed" in msg and "for 3 hosts" in msg, msg
        # three hosts, one copy of the 48 MB image (SSH, TCP and the facts on top)
        assert 48 * MB <= sent <= 1.1 * 48 * MB + 2 * MB, sent / MB

        before = bed.sent()
        run = invoke(*_args(bed, _book(tmp_path, images["next"])), cwd=REPO, timeout=600)
        sent = bed.sent() - before
        assert run.code == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert _ids(bed, images["next"]) == dict.fromkeys(bed.hosts, images["next:id"])
        assert 8 * MB <= sent <= 1.1 * 8 * MB + 2 * MB, sent / MB  # the new layer, not 56 MB
        assert _leftovers(bed) == dict.fromkeys(bed.hosts, "0")  # no key, no directory left
    finally:
        for h in bed.hosts:
            bed.exec(h, f"docker rmi -f {images['next']} {images['base']} >/dev/null 2>&1; true")


def test_a_transfer_killed_half_way_leaves_no_image_and_the_rerun_completes(
    fleet: tuple[TestBed, Path], images: dict[str, str], tmp_path: Path
) -> None:
    bed, _env = fleet
    big = images["big"]
    book = _book(tmp_path, big)
    try:
        with bed.shaped("160mbit"):  # 208 MB at 20 MB/s: ten seconds to cut it in

            def flowing() -> bool:  # the last host of the chain is receiving
                return "y" in bed.exec("h3", "pgrep -f 'relay.py run' >/dev/null && echo y || true")

            killed(_args(bed, book), flowing, timeout=300)
            assert _ids(bed, big) == dict.fromkeys(bed.hosts, "")  # nothing half-loaded shows
            run = invoke(*_args(bed, book)[:-1], cwd=REPO, timeout=600)  # as people run it
        assert run.code == 0, run.stdout[-3000:] + run.stderr[-3000:]
        for h in bed.hosts:  # each host's progress while it ran: bytes of the total, rate, ETA
            seen = re.findall(
                rf"^{h}: image {re.escape(big)} from controller \(relayed\): (.*)$",
                run.stderr,
                re.M,
            )
            assert any(
                re.fullmatch(r"[\d.]+ MiB of [\d.]+ MiB, [\d.]+ MiB/s, 0:\d\d left", s)
                for s in seen
            ), run.stderr[-3000:]
        assert _ids(bed, big) == dict.fromkeys(bed.hosts, images["big:id"])
        assert _leftovers(bed) == dict.fromkeys(bed.hosts, "0")  # the cut relays cleaned up too
        for h in bed.hosts:
            out = bed.exec(h, f"docker run --rm {big} sh -c 'wc -c < /d'").strip()
            assert out == str(160 * MB)
        again = invoke(*_args(bed, book), cwd=REPO, timeout=600)  # converged: nothing to copy
        assert {h: r["changed"] for h, r in again.json["hosts"].items()} == dict.fromkeys(
            bed.hosts, 0
        )
    finally:
        for h in bed.hosts:
            bed.exec(h, f"docker rmi -f {big} {images['base']} >/dev/null 2>&1; true")


def _evil_archive(path: Path, base: str, tags: list[str], work: Path) -> str:
    """An image of this controller saved with the RepoTags a compromised host would give it
    (docker load tags whatever manifest.json names). Returns its id."""
    evil = _build("drfleet-test/evil:1", base, {"evil": 1024}, work)
    raw = work / "raw.tar"
    with raw.open("wb") as fh:
        fh.writelines(docker.from_env().images.get(evil).save())
    with tarfile.open(raw) as src, tarfile.open(path, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member) if member.isfile() else None
            if member.name == "manifest.json" and data is not None:
                manifest = json.loads(data.read())
                manifest[0]["RepoTags"] = tags
                body = json.dumps(manifest).encode()
                member.size = len(body)
                data = io.BytesIO(body)
            dst.addfile(member, data)
    docker.from_env().images.remove("drfleet-test/evil:1", force=True)
    return evil


def test_a_host_that_lies_about_the_next_or_sends_them_its_own_tags_is_caught(
    fleet: tuple[TestBed, Path], tmp_path: Path
) -> None:
    """h1, first in the chain, is compromised (tests/testbed/liar): it reports h2 and h3 done
    with the right id while passing nothing on; then it feeds h2 an archive that tags the image
    being sent, a new tag, and one h2 and h3 already had. The controller reads each host's
    result over that host's own session: h2 and h3 get the direct copy, the tags the archive
    set are put back, and the fleet ends with the controller's image everywhere."""
    bed, _env = fleet
    image = "drfleet-test/relay:small"
    keep, planted = "drfleet-test/keep:1", "drfleet-test/planted:1"
    image_id = _build(image, ensure_busybox(), {"s": 2 * MB}, tmp_path / "small")
    evil = _evil_archive(tmp_path / "evil.tar", ensure_busybox(), [image, planted, keep],
                         tmp_path / "evil")  # fmt: skip
    liar = Path(__file__).parent / "liar"
    h1 = bed.hosts["h1"].container
    kept: dict[str, str] = {}
    try:
        bed.exec("h1", "mkdir -p /opt/liar")
        for src, dst in ((liar / "liar.py", "/opt/liar/liar.py"),
                         (liar / "python3.sh", "/usr/local/bin/python3"),
                         (tmp_path / "evil.tar", "/opt/liar/evil.tar")):  # fmt: skip
            subprocess.run(["docker", "cp", str(src), f"{h1}:{dst}"], check=True)
        bed.exec("h1", "chmod 755 /usr/local/bin/python3 && chmod -R a+rX /opt/liar")
        base = docker.from_env().images.get(ensure_busybox()).id
        for h in ("h2", "h3"):  # a tag the hosts already have, pointing at busybox
            load = f"docker exec -i {bed.hosts[h].container} docker load -q"
            subprocess.run(f"docker save {ensure_busybox()} | {load}", shell=True, check=True)
            bed.exec(h, f"docker tag {base} {keep}")
            kept[h] = base
        book = _book(tmp_path, image)
        for mode in ("lie", "crafted"):
            bed.exec("h1", f"echo {mode} > /opt/liar/mode")
            run = invoke(*_args(bed, book), cwd=REPO, timeout=600)
            assert run.code == 0, run.stdout[-3000:] + run.stderr[-3000:]
            assert _ids(bed, image) == dict.fromkeys(bed.hosts, image_id), mode
            msgs = {h: run.json["hosts"][h]["tasks"][-1]["msg"] for h in bed.hosts}
            assert "relayed" in msgs["h1"], msgs
            for h in ("h2", "h3"):
                assert "the relay did not reach it" in msgs[h] and "sent directly" in msgs[h]
                if mode == "crafted":
                    assert f"set tags it was not sent: {keep}, {planted}" in msgs[h], msgs[h]
                tags = bed.exec(h, "docker image ls --format '{{.Repository}}:{{.Tag}} {{.ID}}'"
                                " --no-trunc")  # fmt: skip
                assert planted not in tags and f"{keep} {kept[h]}" in tags, tags
            # the agent creates from the id provisioning checked, whatever a tag says later
            pins = {
                h: json.loads(bed.exec(h, "cat /var/lib/drfleet/images.json")) for h in bed.hosts
            }
            assert {h: p[image] for h, p in pins.items()} == dict.fromkeys(bed.hosts, image_id)
            for h in bed.hosts:
                bed.exec(h, f"docker rmi -f {image} >/dev/null 2>&1; true")
        assert _leftovers(bed) == dict.fromkeys(bed.hosts, "0")
    finally:
        bed.exec("h1", "rm -rf /opt/liar /usr/local/bin/python3")
        for h in bed.hosts:
            bed.exec(h, f"docker rmi -f {image} {keep} {planted} {evil} >/dev/null 2>&1; true")
        docker.from_env().images.remove(image, force=True)

"""The images task's phases, decided as data before anything is copied (pure)."""

from __future__ import annotations

from drfleet.playbook.modules.docker import ImageCopy, image_phases

SIM = "awsdeepracercommunity/deepracer-simapp:6.0.4-cpu"
MINIO = "minio/minio:latest"


def test_from_the_controller_relayed_where_it_can_be_direct_where_not() -> None:
    p = image_phases(
        "controller",
        {"h1": [SIM, MINIO], "h2": [SIM], "h3": [SIM], "h4": [SIM]},
        {"h1": {SIM: "sha256:s", MINIO: "sha256:old"}, "h2": {}, "h3": {}},
        {"h4": "images: docker.sock: connection refused"},
        {SIM: "sha256:s", MINIO: "sha256:m"},
        {"h1": None, "h2": None, "h3": "sudo there wants a password", "h4": None},
    )
    assert p.copies["h1"] == [ImageCopy(MINIO, "controller", image_id="sha256:m")]
    assert p.relay == {MINIO: ["h1"], SIM: ["h2"]}  # h3 cannot take part in the relay
    assert p.notes["h3"] == [f"{SIM}: sent directly (sudo there wants a password)"]
    assert p.copies["h3"] == [ImageCopy(SIM, "controller", image_id="sha256:s")]
    assert p.failed == {"h4": "h4: images: docker.sock: connection refused"}
    assert p.pin["h1"] == {SIM: "sha256:s", MINIO: "sha256:m"}


def test_an_image_the_controller_lacks_fails_that_host_before_anything_is_sent() -> None:
    p = image_phases("controller-direct", {"h1": [SIM]}, {"h1": {}}, {}, {SIM: None}, {})
    assert "not on this controller" in p.failed["h1"] and not p.relay and "h1" not in p.copies


def test_from_a_peer_or_the_registry() -> None:
    peer = image_phases("peer", {"h1": [SIM], "h2": [SIM]}, {"h1": {SIM: "i"}}, {}, {}, {})
    assert peer.copies == {"h1": [], "h2": [ImageCopy(SIM, "peer", peer="h1")]}
    assert peer.pin["h2"] == {SIM: None}  # any id: nothing to compare it with
    none = image_phases("peer", {"h1": [SIM]}, {}, {}, {}, {})
    assert "no host has" in none.failed["h1"]
    pull = image_phases("pull", {"h1": [SIM, MINIO]}, {"h1": {MINIO: "m"}}, {}, {}, {})
    assert pull.copies == {"h1": [ImageCopy(SIM, "pull")]} and not pull.relay


def test_a_host_copy_is_current_by_its_identity_whatever_id_its_store_gives() -> None:
    # h1's docker (containerd store) holds SIM under another id, with the same identity
    p = image_phases(
        "controller",
        {"h1": [SIM], "h2": [SIM]},
        {"h1": {SIM: "content:s"}, "h2": {SIM: "content:old"}},
        {},
        {SIM: "sha256:s"},
        {"h1": None, "h2": None},
        {SIM: "content:s"},
    )
    assert p.copies["h1"] == [] and p.relay == {SIM: ["h2"]}
    assert p.copies["h2"] == [ImageCopy(SIM, "controller", image_id="sha256:s")]
    assert p.pin == {"h1": {SIM: "content:s"}, "h2": {SIM: "content:s"}}

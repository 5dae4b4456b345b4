"""What provision records for the agent after copying images (fleet.PIN, run as the host runs
it, with `docker image inspect` answering as each of docker's image stores does): an image
is judged by its identity, which both stores report alike though their ids differ."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from drfleet.hosts.probe import identity
from drfleet.playbook.fleet import PIN

# `docker image inspect` of one image: by the classic store (20.10, named by its config's
# digest) and by the containerd store (29, named by its manifest's), as each printed it
CLASSIC = {
    "Id": "sha256:ee9885d96ed200049b2c8b2dbf9ed8c62319756ea6b7bae6c32001385d7c26c8",
    "Created": "2026-12-05T07:57:14.339884764Z",
    "Config": {
        "Hostname": "",
        "User": "",
        "AttachStdin": False,
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh"],
        "Image": "sha256:6c1da60edf04",
        "Volumes": None,
        "WorkingDir": "",
        "Entrypoint": None,
        "Labels": None,
    },
    "Architecture": "amd64",
    "Os": "linux",
    "RootFS": {"Type": "layers", "Layers": ["sha256:0664", "sha256:0fb5"]},
}
CONTAINERD = {
    "Id": "sha256:73a5e0dae4d8c672a55e12cc480720040d7a918a9db6254e63b67509ccce1c37",
    "Created": "2026-12-05T07:57:14.339884764Z",
    "Config": {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh"],
    },
    "Architecture": "amd64",
    "Os": "linux",
    "RootFS": {"Type": "layers", "Layers": ["sha256:0664", "sha256:0fb5"]},
    "Descriptor": {"digest": "sha256:73a5e0dae4d8"},
}


def pin(tmp: Path, doc: dict[str, Any], expect: str) -> dict[str, Any]:
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    (tmp / "inspect.json").write_text(json.dumps([doc]))
    fake = bin_dir / "docker"
    fake.write_text(f"#!/bin/sh\ncat {tmp / 'inspect.json'}\n")
    fake.chmod(0o755)
    out = subprocess.run(
        [sys.executable, "-c", PIN, str(tmp / "pins" / "images.json")],
        input=json.dumps({"images": ["img:1"], "expect": {"img:1": expect}}),
        capture_output=True,
        text=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        check=True,
    )
    said: dict[str, Any] = json.loads(out.stdout)
    return said


def test_the_same_image_in_either_store_is_pinned_by_the_id_that_store_gave_it(
    tmp_path: Path,
) -> None:
    assert identity(CLASSIC) == identity(CONTAINERD)
    said = pin(tmp_path, CONTAINERD, identity(CLASSIC))
    assert said["error"] is None and said["ids"] == {"img:1": CONTAINERD["Id"]}
    pins = json.loads((tmp_path / "pins" / "images.json").read_text())
    assert pins == {"img:1": CONTAINERD["Id"]}


def test_an_image_that_runs_otherwise_is_refused_and_nothing_is_pinned(tmp_path: Path) -> None:
    for changed in (
        {"Config": {**CONTAINERD["Config"], "Entrypoint": ["/bin/evil"]}},
        {"RootFS": {"Type": "layers", "Layers": ["sha256:0664", "sha256:bad"]}},
    ):
        said = pin(tmp_path, {**CONTAINERD, **changed}, identity(CLASSIC))
        assert said["error"] == ["img:1"]
        assert not (tmp_path / "pins" / "images.json").exists()

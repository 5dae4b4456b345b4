"""The README's first command on a Debian 12 host whose Python is as Debian ships it
(externally managed, PEP 668), run by a user with sudo, then `drfleet` from another directory
in a new login shell. The host already has the Docker engine (the baked host image, to keep
the suite short); setup.sh installs the rest, python3-venv among it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.testbed import TestBed, ensure_docker_host_image

CA_BUNDLE = Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")


def checkout() -> bytes:
    """The repository's files, as a clone has them (what `git ls-files` lists)."""
    names = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True
    ).stdout.split(b"\0")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in filter(None, names):
            path = REPO / name.decode()
            if path.exists():
                tar.add(path, arcname=f"drfleet/{name.decode()}", recursive=False)
    return buf.getvalue()


def as_user(bed: TestBed, line: str) -> subprocess.CompletedProcess[str]:
    """A new login shell of the user `fleet` (password-less sudo, as on a cloud image)."""
    return subprocess.run(
        ["docker", "exec", bed.hosts["h1"].container, "su", "-", "fleet", "-c", line],
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_setup_on_debian_12_as_a_sudo_user_then_drfleet_from_anywhere(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    image = ensure_docker_host_image(tmp_path_factory.mktemp("bake"))
    with TestBed(1, tmp_path_factory.mktemp("setup"), image=image) as bed:
        assert bed.exec("h1", "ls /usr/lib/python3*/EXTERNALLY-MANAGED").strip()
        assert "No module named" in bed.exec("h1", "python3 -c 'import ensurepip' 2>&1; true")
        # the host trusts the certificate authorities this machine trusts (as a real machine
        # trusts PyPI's certificate), pip included
        bed.exec("h1", "cat > /etc/ssl/certs/ca-certificates.crt", stdin=CA_BUNDLE.read_text())
        bed.exec(
            "h1", "printf '[global]\\ncert = /etc/ssl/certs/ca-certificates.crt\\n' > /etc/pip.conf"
        )
        subprocess.run(
            ["docker", "exec", "-i", bed.hosts["h1"].container, "sh", "-c",
             "tar -x -C /home/fleet && chown -R fleet:fleet /home/fleet/drfleet"],
            input=checkout(),
            check=True,
        )  # fmt: skip
        setup = as_user(bed, "cd ~/drfleet && scripts/setup.sh")
        assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
        assert "setup: ready" in setup.stdout
        again = as_user(bed, "cd ~/drfleet && scripts/setup.sh")  # safe to run again
        assert again.returncode == 0 and "installing python3-venv" not in again.stdout
        used = as_user(bed, "cd /tmp && command -v drfleet && drfleet -h && drfleet facts -j")
        assert used.returncode == 0, used.stdout[-2000:] + used.stderr[-2000:]
        where, _, rest = used.stdout.partition("\n")
        assert where == "/usr/local/bin/drfleet"
        assert "provision" in rest and "train" in rest  # the commands, listed by -h
        facts = json.loads(rest[rest.index("{") :])
        assert facts["hosts"]["localhost"]["reachable"] is True
        assert facts["hosts"]["localhost"]["os"]["id"] == "debian"
        # the system's Python is left as Debian ships it: drfleet lives in the checkout's venv
        assert (
            bed.exec("h1", "python3 -c 'import drfleet' 2>&1; true")
            .strip()
            .endswith("No module named 'drfleet'")
        )

"""A DeepRacer on AWS installation for the droa-* commands: the stand-in image's droa.py (it
says which file of DRoA each behaviour follows) on this machine's loopback, over HTTPS with a
certificate of the test CA. The controller reaches its AWS parts as a user with an endpoint
override reaches AWS (AWS_ENDPOINT_URL, AWS_CA_BUNDLE) and its site at DR_DROA_URL; HOME is a
folder of the test's, so the login's cache is the test's own."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker

from tests.testbed.images import STANDIN_SIMAPP, ensure_standin, test_ca

USER, PASSWORD = "racer@example.com", "Racer-pass-1!"
INVITED = ("invited@example.com", "Temp-pass-1!")  # still has the temporary password
NOGROUP = ("nogroup@example.com", "Nogroup-pass-1!")  # in no group: no role, no keys


def _certificate(tmp: Path) -> None:
    ca, ca_key = test_ca()
    key, csr, crt, ext = (tmp / n for n in ("droa.key", "droa.csr", "droa.crt", "droa.ext"))
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    run = ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1"]
    subprocess.run([*run, "-keyout", str(key), "-out", str(csr)], check=True, capture_output=True)
    sign = ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key)]
    sign += ["-set_serial", str(int(time.time())), "-days", "2", "-extfile", str(ext)]
    subprocess.run([*sign, "-out", str(crt)], check=True, capture_output=True)
    key.chmod(0o644)  # read by the container's root through a read-only mount


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def droa(tmp: Path) -> Iterator[dict[str, Any]]:
    """Yields the site's url, the environment the commands run with, and the stand-in's
    env.js values."""
    ensure_standin()
    certs = tmp / "droa-certs"
    certs.mkdir()
    _certificate(certs)
    port = _free_port()
    users = f"{USER}:{PASSWORD}:CONFIRMED,{INVITED[0]}:{INVITED[1]}:FORCE_CHANGE_PASSWORD,"
    users += f"{NOGROUP[0]}:{NOGROUP[1]}:NOGROUP"
    client = docker.from_env()
    c = client.containers.run(
        f"{STANDIN_SIMAPP}:1.0-cpu",
        entrypoint=["python3", "/opt/ml/code/droa.py"],
        command=[],
        detach=True,
        network_mode="host",
        environment={"DROA_PORT": str(port), "DROA_USERS": users},
        volumes={str(certs): {"bind": "/certs", "mode": "ro"}},
        labels={"drfleet-test": "1"},
    )
    home = tmp / "home"
    home.mkdir()
    url = f"https://127.0.0.1:{port}"
    env = {
        "HOME": str(home),
        "AWS_ENDPOINT_URL": url,
        "AWS_CA_BUNDLE": str(test_ca()[0]),
        "AWS_CONFIG_FILE": str(home / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-credentials"),
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
    }
    try:
        ctx = ssl.create_default_context(cafile=env["AWS_CA_BUNDLE"])
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/env.js", context=ctx, timeout=5) as r:
                    text = r.read().decode()
                if '"uploadBucketName"' in text:
                    break
            except OSError:
                pass
            c.reload()
            assert c.status == "running", c.logs().decode()[-3000:]
            assert time.monotonic() < deadline, c.logs().decode()[-3000:]
            time.sleep(0.5)
        ids = json.loads(text.split("=", 1)[1].rstrip().rstrip(";"))
        yield {"url": url, "env": env, "ids": ids, "container": c}
    finally:
        c.remove(force=True)

"""Small local images for tests (no registry is reachable): busybox on scratch."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import docker
import docker.errors

BUSYBOX = Path("/bin/busybox")
DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["sh"]
"""


def ensure_busybox(client: docker.DockerClient | None = None) -> str:
    """`drfleet-test/busybox:<hash>`, built in about a second from Debian's busybox-static."""
    client = client or docker.from_env()
    if not BUSYBOX.exists():
        raise RuntimeError("needs /bin/busybox: apt-get install busybox-static")
    digest = hashlib.sha256(BUSYBOX.read_bytes() + DOCKERFILE.encode()).hexdigest()[:12]
    tag = f"drfleet-test/busybox:{digest}"
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        with tempfile.TemporaryDirectory() as ctx:
            shutil.copy(BUSYBOX, Path(ctx) / "busybox")
            (Path(ctx) / "Dockerfile").write_text(DOCKERFILE)
            client.images.build(path=ctx, tag=tag, rm=True, forcerm=True)
    return tag

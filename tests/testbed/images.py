"""Small local images for tests (no registry is reachable): busybox on scratch."""

from __future__ import annotations

import hashlib
import shutil
import sys
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


SIMAPP_DIR = Path(__file__).with_name("simapp")
STANDIN_SIMAPP = "drfleet-standin/simapp"  # tags 1.0-cpu and 1.0-gpu
STANDIN_MINIO = "drfleet-standin/minio:1"
# docker>=7: Debian's python3-docker 6.1 breaks with the newer requests moto brings
WHEELS_SPEC = ("moto[server]", "docker>=7")


def _cache() -> Path:
    from tests.testbed.bed import CACHE

    CACHE.mkdir(parents=True, exist_ok=True)
    return CACHE


def test_ca() -> tuple[Path, Path]:
    """The test bed's certificate authority (certificate, key), made once per cache: the
    stand-in simapp trusts it as the real image trusts Amazon's, and the stand-in AWS's
    certificate is signed by it (tests/testbed/aws_standin.py)."""
    import subprocess

    from tests.testbed.bed import _lock

    crt, key = _cache() / "test-ca.crt", _cache() / "test-ca.key"
    with _lock("test-ca"):
        if not crt.exists():
            made = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650"]
            made += ["-subj", "/CN=drfleet test-bed CA", "-keyout", str(key)]
            subprocess.run([*made, "-out", f"{crt}.tmp"], check=True, capture_output=True)
            key.chmod(0o600)
            Path(f"{crt}.tmp").rename(crt)
    return crt, key


def standin_base(client: docker.DockerClient) -> str:
    """The stand-in images' Debian root (simapp/build-rootfs.sh), imported once from its
    cached tarball: its tag."""
    from tests.testbed.bed import rootfs_image

    script = SIMAPP_DIR / "build-rootfs.sh"
    digest = hashlib.sha256(script.read_bytes()).hexdigest()[:12]
    _cache()
    return rootfs_image(
        client, "standin-base", "drfleet-standin/base", digest, [str(script)],
        f"simapp-rootfs-{digest}.tar",
    )  # fmt: skip


def ensure_standin(client: docker.DockerClient | None = None) -> dict[str, str]:
    """The stand-in simapp (all three roles, with the real image's entrypoint: see
    simapp/image/Dockerfile) and its S3 server image, built once per recipe: a debootstrap
    root (cached tarball), moto wheels fetched on this controller (hosts and images never
    reach PyPI), and the stand-in's scripts."""

    from tests.testbed.bed import _lock

    client = client or docker.from_env()
    parts = [SIMAPP_DIR / "build-rootfs.sh", *sorted((SIMAPP_DIR / "image").iterdir())]
    ca = test_ca()[0]
    digest = hashlib.sha256(
        b"".join(p.read_bytes() for p in [*parts, ca]) + " ".join(WHEELS_SPEC).encode()
    ).hexdigest()[:12]
    tags = {
        "cpu": f"{STANDIN_SIMAPP}:1.0-cpu",
        "gpu": f"{STANDIN_SIMAPP}:1.0-gpu",
        "minio": STANDIN_MINIO,
    }
    with _lock("standin"):
        try:
            img = client.images.get(tags["cpu"])
            if img.labels.get("drfleet.recipe") == digest:
                client.images.get(tags["minio"])
                return tags
        except docker.errors.ImageNotFound:
            pass
        base = standin_base(client)
        wheels = _wheels(
            f"wheels-{hashlib.sha256(' '.join(WHEELS_SPEC).encode()).hexdigest()[:8]}", WHEELS_SPEC
        )
        with tempfile.TemporaryDirectory() as ctx:
            shutil.copytree(wheels, Path(ctx) / "wheels")
            for p in parts[1:]:
                shutil.copy(p, Path(ctx) / p.name)
            shutil.copy(ca, Path(ctx) / "test-ca.crt")
            client.images.build(
                path=ctx,
                tag=tags["cpu"],
                buildargs={"BASE": base},
                labels={"drfleet.recipe": digest},
                rm=True,
                forcerm=True,
            )
            client.images.get(tags["cpu"]).tag(tags["gpu"])
            (Path(ctx) / "Dockerfile").write_text(
                f'FROM {tags["cpu"]}\nENTRYPOINT ["python3", "/opt/ml/code/standin.py", "minio"]\n'
            )
            client.images.build(path=ctx, tag=tags["minio"], rm=True, forcerm=True)
    return tags


def _wheels(name: str, spec: tuple[str, ...]) -> Path:
    """Wheels for the stand-ins' Debian Python (3.11), fetched once on this controller into the
    cache (hosts and images never reach PyPI)."""
    import subprocess

    wheels = _cache() / name
    if not (wheels / ".complete").exists():
        platforms = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "any")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "-d", str(wheels)]
            + ["--python-version", "3.11", "--only-binary=:all:"]
            + [arg for p in platforms for arg in ("--platform", p)]
            + list(spec),
            check=True,
        )
        (wheels / ".complete").touch()
    return wheels


METRICS_DIR = Path(__file__).with_name("metrics")


def ensure_metrics_standins(client: docker.DockerClient | None = None) -> dict[str, str]:
    """The metrics stack's images under the tags drfleet runs (drfleet.runs.metrics.IMAGES),
    built once per recipe (metrics/Dockerfile) on the stand-in simapp's Debian root, which
    holds Debian's InfluxDB: the real server, and the Telegraf and Grafana stand-ins."""
    from drfleet.runs.metrics import IMAGES
    from tests.testbed.bed import _lock

    client = client or docker.from_env()
    base = standin_base(client)
    parts = sorted(p for p in METRICS_DIR.iterdir() if p.is_file())
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in parts) + base.encode()).hexdigest()[
        :12
    ]
    with _lock("metrics"):
        try:
            if all(
                client.images.get(tag).labels.get("drfleet.recipe") == digest
                for tag in IMAGES.values()
            ):
                return dict(IMAGES)
        except docker.errors.ImageNotFound:
            pass
        with tempfile.TemporaryDirectory() as ctx:
            for p in parts:
                shutil.copy(p, Path(ctx) / p.name)
            for name, tag in IMAGES.items():
                client.images.build(
                    path=ctx,
                    tag=tag,
                    target=name,
                    buildargs={"BASE": base},
                    labels={"drfleet.recipe": digest},
                    rm=True,
                    forcerm=True,
                )
    return dict(IMAGES)


ANALYSIS_DIR = Path(__file__).with_name("analysis")
ANALYSIS_WHEELS = ("jupyterlab", "boto3", "awscli")


def ensure_analysis_standin(client: docker.DockerClient | None = None) -> str:
    """The log-analysis image under the tag drfleet runs by default (DR_ANALYSIS_IMAGE=cpu),
    built once per recipe (analysis/Dockerfile) on the stand-in simapp's Debian root, with the
    real JupyterLab from wheels fetched on this controller."""
    from drfleet.runs.loganalysis import image_of
    from tests.testbed.bed import _lock

    client = client or docker.from_env()
    tag = image_of("cpu")
    base = standin_base(client)
    parts = sorted(p for p in ANALYSIS_DIR.iterdir() if p.is_file())
    spec = " ".join(ANALYSIS_WHEELS).encode()
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in parts) + spec + base.encode())
    with _lock("analysis"):
        try:
            if client.images.get(tag).labels.get("drfleet.recipe") == digest.hexdigest()[:12]:
                return tag
        except docker.errors.ImageNotFound:
            pass
        wheels = _wheels(f"analysis-wheels-{hashlib.sha256(spec).hexdigest()[:8]}", ANALYSIS_WHEELS)
        with tempfile.TemporaryDirectory() as ctx:
            shutil.copytree(wheels, Path(ctx) / "wheels")
            for p in parts:
                shutil.copy(p, Path(ctx) / p.name)
            client.images.build(
                path=ctx,
                tag=tag,
                buildargs={"BASE": base},
                labels={"drfleet.recipe": digest.hexdigest()[:12]},
                rm=True,
                forcerm=True,
            )
    return tag

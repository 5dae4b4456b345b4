"""log-analysis' pure core (drfleet.runs.loganalysis) and the filter the controller applies to
a worker host's log archive before it reaches the trainer's host."""

from __future__ import annotations

import configparser
import io
import tarfile

import pytest

from drfleet.commandline.cli_analysis import _keep
from drfleet.drfc.envfile import parse
from drfleet.errors import DrfleetError
from drfleet.images.image_layers import cut
from drfleet.runs import loganalysis as la


def test_the_image_is_drfcs_with_the_tag_system_env_names() -> None:
    assert la.image(parse("DR_ANALYSIS_IMAGE=gpu\n", "s")) == (
        "awsdeepracercommunity/deepracer-analysis:gpu"
    )
    assert la.image(parse("", "s")).endswith(":cpu")  # DRfC's template default
    with pytest.raises(DrfleetError, match="not an image tag"):
        la.image(parse("DR_ANALYSIS_IMAGE='cpu; rm -rf /'\n", "s"))


def test_jupyter_is_published_on_loopback_and_what_it_reads_is_read_only() -> None:
    doc = la.container(la.image_of("cpu"), with_minio=True)
    assert doc["publish_address"] == "127.0.0.1" and doc["ports"] == {"8888/tcp": 8888}
    assert doc["networks"] == ["sagemaker-local"]  # minio is `minio` there, as under DRfC
    mounts = {m["target"]: m for m in doc["mounts"]}
    assert set(mounts) == {
        "/workspace/logs", "/home/ubuntu/.aws", "/workspace/analysis", "/workspace/minio"
    }  # fmt: skip
    assert [t for t, m in mounts.items() if not m.get("read_only")] == ["/workspace/analysis"]
    assert "/workspace/minio" not in {
        m["target"] for m in la.container(la.image_of("cpu"), with_minio=False)["mounts"]
    }


def test_aws_files_hold_the_runs_profile_with_its_endpoint() -> None:
    files = la.aws_files(
        "minio", {"access_key": "AK", "secret_key": "SK"}, "us-east-1", la.MINIO_URL
    )
    config, creds = configparser.ConfigParser(), configparser.ConfigParser()
    config.read_string(files["config"].decode())
    creds.read_string(files["credentials"].decode())
    assert dict(config["profile minio"]) == {
        "region": "us-east-1", "endpoint_url": "http://minio:9000"
    }  # fmt: skip
    assert dict(creds["minio"]) == {"aws_access_key_id": "AK", "aws_secret_access_key": "SK"}
    # AWS with the hosts' instance role: no keys, no credentials file; `default` unprefixed
    role = la.aws_files("default", {}, "eu-west-1", la.endpoint("aws", ""))
    assert set(role) == {"config"} and role["config"].startswith(b"[default]")
    assert la.endpoint("remote", "https://nas:9000") == "https://nas:9000"


def test_the_url_is_jupyters_newest_pointed_at_the_forward() -> None:
    log = (
        "    http://abc:8888/lab?token=11aa\n    http://127.0.0.1:8888/lab?token=11aa\n"
        "restarted\n    http://127.0.0.1:8888/lab?token=22bb\n"
    )
    url = la.url_in(log)
    assert url == "http://127.0.0.1:8888/lab?token=22bb"
    assert la.local_url(url, 41234) == "http://127.0.0.1:41234/lab?token=22bb"
    assert la.url_in("Jupyter starting") is None


def _archive(build: list[tarfile.TarInfo]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info in build:
            data = b"x" * info.size if info.isreg() else None
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = 3 if kind == tarfile.REGTYPE else 0
    return info


def test_a_hosts_archive_reaches_the_trainer_with_only_its_logs() -> None:
    """What a hostile worker host might send: links, devices, `..`, absolute names, another
    prefix, ros2's `latest`, a PAX path that renames a member; only the run's folders and
    regular files pass, byte for byte."""
    hostile = [
        _member("run", tarfile.DIRTYPE),
        _member("run/2026-12-06-10-00-00-000001-abc-12", tarfile.DIRTYPE),
        _member("run/2026-12-06-10-00-00-000001-abc-12/launch.log"),
        _member("run/latest", tarfile.SYMTYPE, "/root/.ros/log/x"),
        _member("run/latest/planted"),
        _member("run/hard", tarfile.LNKTYPE, "/etc/shadow"),
        _member("run/dev", tarfile.CHRTYPE),
        _member("run/../../root/.ssh/authorized_keys"),
        _member("/etc/cron.d/evil"),
        _member("other-run/file"),
        _member("run/" + "long/" * 30 + "name.log"),  # a PAX path, kept: it is the run's
    ]
    sneaky = _member("run/plain.log")
    sneaky.pax_headers = {"path": "../escaped"}  # the name tar would use
    count = [0]
    kept = cut([_archive([*hostile, sneaky])], lambda m: _keep("run", m, count))
    with tarfile.open(fileobj=io.BytesIO(b"".join(kept))) as tar:
        names = [(m.name, m.type) for m in tar.getmembers()]
    assert names == [
        ("run", tarfile.DIRTYPE),
        ("run/2026-12-06-10-00-00-000001-abc-12", tarfile.DIRTYPE),
        ("run/2026-12-06-10-00-00-000001-abc-12/launch.log", tarfile.REGTYPE),
        ("run/" + "long/" * 30 + "name.log", tarfile.REGTYPE),
    ]
    assert count == [2]


def test_kept_names() -> None:
    assert la.kept("a/b", "a/b/c.log", "file")
    assert not la.kept("a/b", "a/bc/c.log", "file")
    assert not la.kept("run", "run/./x", "file") and not la.kept("run", "run//x", "file")
    assert not la.kept("run", "run/x", "symlink")

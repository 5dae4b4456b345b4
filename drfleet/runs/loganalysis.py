"""Log analysis (DRfC's dr-start-loganalysis, scripts/log-analysis/start.sh): the
deepracer-analysis Jupyter image, one container on the trainer's host and its overlay, so the
notebooks reach the run's minio as `minio` as they do under DRfC, with DRfC's four folders:
the logs (data/logs: the workers' DR_ROBOMAKER_MOUNT_LOGS, collected from every host), the
AWS profile of the run's S3 (DR_LOCAL_S3_PROFILE, as ~/.aws), the notebooks' own folder
(data/analysis) and minio's data. Jupyter listens on the host's 127.0.0.1 alone and is
reached from here through SSH.

Everything here is decided from data: the container, the ~/.aws files, the URL Jupyter
prints, which members of a host's log archive may land on the trainer's host. The I/O is the
command's (drfleet.commandline.cli_analysis), and the agent starts the container."""

from __future__ import annotations

import configparser
import io
import re
from typing import Any

from drfleet.drfc.envfile import EnvFile
from drfleet.errors import DrfleetError
from drfleet.names import ANALYSIS_AWS, ANALYSIS_DATA, LOGS, MINIO_DATA, NETWORK

REPOSITORY = "awsdeepracercommunity/deepracer-analysis"  # scripts/log-analysis/start.sh
DEFAULT_TAG = "cpu"  # defaults/template-system.env DR_ANALYSIS_IMAGE
NAME = "drfleet-analysis"  # DRfC's deepracer-analysis, in drfleet's names
PORT = 8888  # the image's EXPOSE and jupyter's --port
USER_ID = 1000  # the image's user ubuntu (docker/entrypoint.sh's NB_UID default)
# dr-url-loganalysis's pattern for the URL in the container's log
URL = re.compile(r"http://127\.0\.0\.1:[0-9]+[^ ]*token=[a-f0-9]+")
MINIO_URL = "http://minio:9000"  # the fleet's minio on the overlay, as the notebooks name it
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # docker's tag grammar


def image_of(tag: str) -> str:
    return f"{REPOSITORY}:{tag}"


def image(system: EnvFile, where: str = "system.env") -> str:
    """The image DR_ANALYSIS_IMAGE names (its tag, as DRfC's start.sh takes it), checked."""
    tag = system.get("DR_ANALYSIS_IMAGE", "") or DEFAULT_TAG
    if not TAG.fullmatch(tag):
        raise DrfleetError(
            f"DR_ANALYSIS_IMAGE={tag} is not an image tag",
            where=where,
            fix=f"name a tag of {REPOSITORY}, such as cpu (DRfC's default) or gpu",
        )
    return image_of(tag)


def container(image_name: str, with_minio: bool) -> dict[str, Any]:
    """The container as start.sh runs it (`docker run --rm -d -p 8888:8888 -v ... --network
    sagemaker-local`), with two differences said in docs/drfc-differences.md: Jupyter is
    published on the host's loopback only, and the logs, minio's data and ~/.aws are
    read-only (the notebooks read them; a notebook never edits minio's files under it)."""
    mounts = [
        {"source": LOGS, "target": "/workspace/logs", "read_only": True},
        {"source": ANALYSIS_AWS, "target": "/home/ubuntu/.aws", "read_only": True},
        {"source": ANALYSIS_DATA, "target": "/workspace/analysis"},
    ]
    if with_minio:
        mounts.append({"source": MINIO_DATA, "target": "/workspace/minio", "read_only": True})
    return {
        "name": NAME,
        "image": image_name,
        "networks": [NETWORK],
        "ports": {f"{PORT}/tcp": PORT},
        "publish_address": "127.0.0.1",
        "mounts": mounts,
        "restart": "always",
        "role": "log-analysis",
    }


def endpoint(storage: str, system_url: str) -> str | None:
    """The S3 endpoint the notebooks use from the container: the fleet's minio by its overlay
    name (local), DR_REMOTE_MINIO_URL (remote), AWS's own (aws: None)."""
    return {"local": MINIO_URL, "remote": system_url}.get(storage)


def aws_files(
    profile: str, creds: dict[str, str], region: str, endpoint_url: str | None
) -> dict[str, bytes]:
    """~/.aws for the container: the run's S3 keys under DR_LOCAL_S3_PROFILE (DRfC mounts the
    user's own ~/.aws, where init.sh put minio's keys under that profile), its region, and the
    endpoint (AWS config's endpoint_url), so `aws --profile minio s3 ls` and the notebooks'
    S3FileHandler(profile=...) reach the run's S3. No keys (an instance role): no credentials
    file, boto3 then asks the instance."""
    section = profile if profile == "default" else f"profile {profile}"
    config = configparser.ConfigParser(interpolation=None)
    config[section] = {"region": region}
    if endpoint_url:
        config[section]["endpoint_url"] = endpoint_url
    out = {"config": _ini(config)}
    if creds.get("access_key"):
        cred = configparser.ConfigParser(interpolation=None)
        cred[profile] = {
            "aws_access_key_id": creds["access_key"],
            "aws_secret_access_key": creds["secret_key"],
        }
        if creds.get("session_token"):
            cred[profile]["aws_session_token"] = creds["session_token"]
        out["credentials"] = _ini(cred)
    return out


def _ini(parser: configparser.ConfigParser) -> bytes:
    buf = io.StringIO()
    parser.write(buf)
    return buf.getvalue().encode()


def url_in(log: str) -> str | None:
    """The newest URL with its token that Jupyter printed (dr-url-loganalysis's)."""
    found = URL.findall(log)
    return found[-1] if found else None


def local_url(url: str, port: int) -> str:
    """The URL Jupyter printed, pointed at the forward here: DRfC shows it with localhost."""
    return re.sub(r"^http://127\.0\.0\.1:[0-9]+", f"http://127.0.0.1:{port}", url)


def kept(prefix: str, name: str, kind: str) -> bool:
    """Whether a member of a worker host's log archive may be written on the trainer's host
    (the controller passes on only these): a directory or a regular file, under the run's
    prefix, named without `..`, `.`, an absolute path or `latest` (ros2 launch's symlink to
    its newest log folder, which the trainer's own logs hold and tar would follow). Links,
    devices and anything else a host might send are dropped."""
    if kind not in ("file", "dir"):
        return False
    parts = name.rstrip("/").split("/")
    if any(p in ("", ".", "..", "latest") for p in parts):  # "" also: an absolute name
        return False
    path = "/".join(parts)
    return path == prefix or path.startswith(prefix + "/")

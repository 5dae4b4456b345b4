"""The run's S3: minio on the trainer (DR_CLOUD=local), the user's S3 API at
DR_REMOTE_MINIO_URL (remote) or a bucket in the user's AWS account (aws); the client, its
keys, what train uploads, waiting for it."""

from __future__ import annotations

import time
from typing import Any

from drfleet.errors import DrfleetError
from drfleet.runs import training


def s3_client(endpoint: str | None, creds: dict[str, str], region: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=creds["access_key"],
        aws_secret_access_key=creds["secret_key"],
        config=Config(
            retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=30
        ),
    )


def run_credentials(cfg: Any, env_dir: Any, create: bool = True) -> dict[str, str]:
    """The keys the containers get: minio's (local: made once, DR_LOCAL_S3_PROFILE's when this
    machine has that profile, else generated; not create: none are made when there are none
    yet), DR_LOCAL_S3_PROFILE's (remote: activate.sh reads them with
    `aws configure get`), and with DR_CLOUD=aws the profile's own keys or none at all (the
    hosts' instance role: aws_keys)."""
    if cfg.storage == "remote":
        return profile_keys(cfg.setting("DR_LOCAL_S3_PROFILE") or "default", "DR_LOCAL_S3_PROFILE")
    if cfg.storage == "aws":
        return aws_keys(cfg.setting("DR_LOCAL_S3_PROFILE"))
    have = training.credentials(env_dir, create=False)
    if have or not create:
        return have
    return training.credentials(env_dir, True, minio_profile_keys(cfg))


# minio's own limits on its root user and password (it refuses to start otherwise)
MINIO_MIN_USER, MINIO_MIN_PASSWORD = 3, 8


def minio_profile_keys(cfg: Any) -> dict[str, str] | None:
    """DR_CLOUD=local: the keys of the AWS profile DR_LOCAL_S3_PROFILE (DRfC's activate.sh
    reads minio's from it with `aws configure get`), when this machine has that profile with
    keys minio takes; None: drfleet makes its own (minio_keys_note says which)."""
    try:
        keys = profile_keys(cfg.setting("DR_LOCAL_S3_PROFILE") or "minio", "DR_LOCAL_S3_PROFILE")
    except DrfleetError:
        return None
    fits = (
        len(keys["access_key"]) >= MINIO_MIN_USER and len(keys["secret_key"]) >= MINIO_MIN_PASSWORD
    )
    return keys if fits else None


def minio_keys_note(cfg: Any, creds: dict[str, str]) -> str:
    """Whose keys the fleet's minio runs with, for train's notes."""
    profile = cfg.setting("DR_LOCAL_S3_PROFILE") or "minio"
    if creds and creds == minio_profile_keys(cfg):
        return f"minio's keys are those of the AWS profile {profile} (DR_LOCAL_S3_PROFILE)"
    return (
        f"minio's keys are drfleet's own (.drfleet/minio-credentials.json), not the AWS "
        f"profile {profile}'s (DR_LOCAL_S3_PROFILE): it has none here, or they were made first"
    )


# botocore's names for credentials that are keys of the user's own, not temporary ones
STATIC_KEYS = frozenset({"shared-credentials-file", "config-file", "env", "explicit"})


def aws_keys(profile: str) -> dict[str, str]:
    """DR_CLOUD=aws, as activate.sh chooses: the containers get the profile's keys
    (docker-compose-keys.yml) unless the caller is an assumed role (an instance role, SSO, a
    role_arn profile), whose temporary credentials cannot be handed on; then ({}) each
    container uses the instance role of the host it runs on (docker-compose-aws.yml alone)."""
    found = _session(profile, "DR_LOCAL_S3_PROFILE").get_credentials()
    if found is None:
        raise _no_credentials(profile, "DR_LOCAL_S3_PROFILE")
    if found.method not in STATIC_KEYS:  # fetched and refreshed from STS or the metadata
        return {}
    frozen = found.get_frozen_credentials()
    if frozen.token:  # keys with a session token: they expire, and keys.yml passes no token
        return {}
    return {"access_key": frozen.access_key, "secret_key": frozen.secret_key}


def profile_keys(profile: str, setting: str) -> dict[str, str]:
    import boto3
    import botocore.exceptions

    try:
        found = boto3.Session(profile_name=profile).get_credentials()
    except botocore.exceptions.ProfileNotFound:
        found = None
    frozen = found.get_frozen_credentials() if found else None
    if frozen is None or not frozen.access_key or not frozen.secret_key:
        raise DrfleetError(
            f"{setting}={profile}: no AWS keys in that profile",
            fix=f"aws configure --profile {profile} (the S3 API's access and secret key)",
        )
    return {"access_key": frozen.access_key, "secret_key": frozen.secret_key}


def bucket_state(s3: Any, bucket: str) -> tuple[str, str]:
    """("ok" | "missing" | "refused" | "unreachable", the S3 error code or reason): a HEAD
    of the bucket, which cannot tell wrong keys from missing rights (both are 403)."""
    import botocore.exceptions

    try:
        s3.head_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return ("missing" if code in ("404", "NoSuchBucket") else "refused"), code
    except (
        botocore.exceptions.EndpointConnectionError,
        botocore.exceptions.ConnectTimeoutError,
    ) as exc:
        return "unreachable", str(exc)
    return "ok", ""


def direct(cfg: Any, creds: dict[str, str]) -> Any | None:
    """The run's S3 where this machine reaches it itself (remote: DR_REMOTE_MINIO_URL with the
    profile's keys; aws: boto3's session of DR_LOCAL_S3_PROFILE, whose endpoint the standard
    AWS variables may override), checked before anything starts; None for the trainer's minio
    (reached through SSH once it runs)."""
    bucket, profile = cfg.setting("DR_LOCAL_S3_BUCKET"), cfg.setting("DR_LOCAL_S3_PROFILE")
    region = cfg.setting("DR_AWS_APP_REGION")
    if cfg.storage == "remote":
        url = cfg.get("DR_REMOTE_MINIO_URL")
        s3 = s3_client(url, creds, region)
        remote_access(s3, bucket, url, profile)
        return s3
    if cfg.storage == "aws":
        s3 = profile_client(profile, region, "DR_LOCAL_S3_PROFILE")
        aws_access(s3, bucket, profile, region)
        return s3
    return None


def aws_access(s3: Any, bucket: str, profile: str, region: str) -> None:
    """DR_CLOUD=aws: the bucket exists in the account and the credentials may use it; it is
    never created there (DRfC's users make it with `aws s3 mb`)."""
    state, code = bucket_state(s3, bucket)
    if state == "missing":
        raise DrfleetError(
            f"DR_LOCAL_S3_BUCKET={bucket}: no such bucket in S3 ({region}); nothing was started",
            fix=f"aws s3 mb s3://{bucket} --region {region}, or set DR_LOCAL_S3_BUCKET to "
            "a bucket of yours",
        )
    if state == "refused":
        raise DrfleetError(
            f"DR_LOCAL_S3_PROFILE={profile}: S3 refuses its credentials for bucket {bucket} "
            f"({code}); nothing was started",
            fix=f"give the credentials access to s3://{bucket}, or set DR_LOCAL_S3_BUCKET to "
            "a bucket they may use",
        )
    if state == "unreachable":
        raise DrfleetError(
            f"S3 ({region}) does not answer from this machine: {code}; nothing was started",
            fix="check this machine's network, or DR_AWS_APP_REGION in system.env",
        )


def remote_access(s3: Any, bucket: str, url: str, profile: str) -> None:
    """DR_CLOUD=remote: the S3 API answers, takes the profile's keys and has the bucket;
    otherwise one message naming the setting to fix, before anything starts."""
    state, code = bucket_state(s3, bucket)
    if state == "missing":
        raise DrfleetError(
            f"DR_LOCAL_S3_BUCKET={bucket}: no such bucket at {url}; nothing was started",
            fix="create it there, or set DR_LOCAL_S3_BUCKET to one it has",
        )
    if state == "refused":
        raise DrfleetError(
            f"DR_LOCAL_S3_PROFILE={profile}: {url} refuses its keys for bucket {bucket} "
            f"({code}); nothing was started",
            fix=f"aws configure --profile {profile} with keys the S3 API knows",
        )
    if state == "unreachable":
        raise DrfleetError(
            f"DR_REMOTE_MINIO_URL={url}: nothing answers there; nothing was started",
            fix="start the S3 API, or correct the URL in system.env",
        )


def profile_client(profile: str, region: str, setting: str, endpoint: str | None = None) -> Any:
    """An S3 client as the aws CLI's `--profile` gives it (credentials and an endpoint_url
    from ~/.aws/config or AWS_ENDPOINT_URL*, or `endpoint` as its --endpoint-url), in
    DR_AWS_APP_REGION (activate.sh exports it as AWS_DEFAULT_REGION, which wins over the
    profile's region)."""
    from botocore.config import Config

    session = _session(profile, setting)
    if session.get_credentials() is None:
        raise _no_credentials(profile, setting)
    return session.client(
        "s3",
        region_name=region or session.region_name,
        endpoint_url=endpoint or None,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5),
    )


def _session(profile: str, setting: str) -> Any:
    """boto3's session of the profile. DRfC passes no --profile when the host has an instance
    role: a "default" profile that does not exist means the same here."""
    import boto3
    import botocore.exceptions

    try:
        return boto3.Session(profile_name=profile or None)
    except botocore.exceptions.ProfileNotFound:
        if profile not in ("", "default"):
            raise DrfleetError(
                f"{setting}={profile}: no such AWS profile",
                fix=f"aws configure --profile {profile}, or set {setting} to one you have",
            ) from None
        return boto3.Session()


def _no_credentials(profile: str, setting: str) -> DrfleetError:
    return DrfleetError(
        f"{setting}={profile}: no AWS credentials in the profile, the environment or an "
        "instance role",
        fix=f"aws configure --profile {profile or 'default'}",
    )


def bucket_exists(s3: Any, bucket: str, setting: str) -> None:
    """A target bucket that is not there (or not the caller's) stops the copy before it starts."""
    state, code = bucket_state(s3, bucket)
    if state == "unreachable":
        raise DrfleetError(f"{setting}={bucket}: S3 does not answer ({code})")
    if state != "ok":
        what = "does not exist" if state == "missing" else f"refuses access ({code})"
        raise DrfleetError(
            f"{setting}={bucket}: the bucket {what}; nothing was copied",
            fix=f"create it, or set {setting} to one the profile can write",
        )


def upload(s3: Any, p: training.Prepared, wipe: bool, live: bool = False) -> list[str]:
    """Puts the run's files in S3. The model prefix must hold nothing but what this run puts
    there (a run killed before its trainer started), unless --wipe. A run whose trainer is
    still live with exactly these files is the same run: nothing is uploaded and train goes
    on to converge the hosts (a re-run after the controller died)."""
    cfg = p.cfg
    bucket = cfg.setting("DR_LOCAL_S3_BUCKET")
    prefix = cfg.setting("DR_LOCAL_S3_MODEL_PREFIX")
    want = training.objects(p)
    ensure_bucket(s3, bucket)
    existing = listed(s3, bucket, prefix)
    if existing and not wipe and not {o["Key"] for o in existing} <= set(want):
        differ = [k for k, body in want.items() if read(s3, bucket, k) != body]
        if live and not differ:
            return []
        if live:
            raise DrfleetError(
                f"a run is in progress in s3://{bucket}/{prefix}/ and these files differ from "
                f"what it started with: {', '.join(differ)}; nothing was changed",
                fix="`drfleet stop` first, then train with --wipe or another "
                "DR_LOCAL_S3_MODEL_PREFIX",
            )
        raise DrfleetError(
            f"s3://{bucket}/{prefix}/ already holds {len(existing)} objects of "
            "an earlier run; nothing was started",
            fix="use another DR_LOCAL_S3_MODEL_PREFIX, or --wipe to delete them",
        )
    if wipe:
        delete_prefix(s3, bucket, prefix, existing)
    for key, body in want.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    return list(want)


def ensure_bucket(s3: Any, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:
        s3.create_bucket(Bucket=bucket)


def listed(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """The objects under prefix/ (a first page: enough to tell empty from not)."""
    found: list[dict[str, Any]] = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get(
        "Contents", []
    )
    return found


def delete_prefix(s3: Any, bucket: str, prefix: str, existing: list[dict[str, Any]]) -> None:
    """Deletes everything under prefix/, a page at a time, starting with existing."""
    while existing:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": o["Key"]} for o in existing]})
        existing = listed(s3, bucket, prefix)


def every(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """All the objects under prefix/, every page."""
    return [
        o
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
        for o in page.get("Contents", [])
    ]


def read(s3: Any, bucket: str, key: str) -> bytes | None:
    """The object's bytes, or None when there is no such key."""
    try:
        body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body
    except s3.exceptions.NoSuchKey:
        return None


def missing(exc: BaseException) -> bool:
    """Whether an S3 error says there is no such key (a copy's source included)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", "")) in ("NoSuchKey", "404", "NotFound")


def wait(s3: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            s3.list_buckets()
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise DrfleetError(f"S3 (minio) does not answer on the trainer: {exc}") from None
            time.sleep(0.5)

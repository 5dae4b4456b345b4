"""A user's own S3 API for DR_CLOUD=remote (a minio on a NAS): the stand-in minio of the
simapp image (standin.py `minio`, which refuses other keys, as minio does), its keys, and a
client of it as the controller reaches it."""

from __future__ import annotations

from typing import Any

import boto3

KEY, SECRET = "naskey", "nas-secret-1"
IMAGE = "drfleet-standin/simapp:1.0-cpu"
COMMAND = ["/opt/ml/code/standin.py", "minio", "server", "/data"]  # python3's arguments


def client(url: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
    )

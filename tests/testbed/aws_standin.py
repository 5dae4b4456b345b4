"""AWS for DR_CLOUD=aws on the test bed, standing in for the user's account as the containers
meet it: they are given no endpoint (docker-compose-aws.yml), so their boto3 asks DNS for
`<bucket>.s3.amazonaws.com` and speaks TLS to it. The stand-in (standin.py `aws`, on one
host's port 443 and 53/udp) answers those names and serves S3 with a certificate of the test
CA the stand-in simapp trusts; every host's resolver points at it while the test runs. This
machine reaches it through the standard AWS variables (AWS_ENDPOINT_URL, AWS_CA_BUNDLE) and a
profile file, as a user with an endpoint override would."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3

from tests.testbed import TestBed, imds_standin
from tests.testbed.drfc_run import up
from tests.testbed.images import test_ca

NAME = "test-aws"  # not drfleet-*: the tests look for those
REGION = "us-east-1"
KEY, SECRET = "AKIASTANDIN", "aws-standin-secret"  # the user's, in a profile file here
ROLE_KEY, ROLE_SECRET = "ASIAHOSTROLE", "host-role-secret"  # the hosts' instance role's


def certificate(tmp: Path, address: str) -> tuple[Path, Path]:
    """S3's names (global and regional, each bucket's subdomain) and the host's address."""
    ca, ca_key = test_ca()
    key, csr, crt, ext = (tmp / n for n in ("s3.key", "s3.csr", "s3.crt", "s3.ext"))
    names = ["s3.amazonaws.com", f"s3.{REGION}.amazonaws.com"]
    alt = ",".join([*(f"DNS:{n},DNS:*.{n}" for n in names), f"IP:{address}"])
    ext.write_text(f"subjectAltName={alt}\n")
    run = ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=s3.amazonaws.com"]
    subprocess.run([*run, "-keyout", str(key), "-out", str(csr)], check=True, capture_output=True)
    sign = ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key)]
    sign += ["-set_serial", str(int(time.time())), "-days", "2", "-extfile", str(ext)]
    subprocess.run([*sign, "-out", str(crt)], check=True, capture_output=True)
    return crt, key


@contextlib.contextmanager
def aws_account(bed: TestBed, tmp: Path, host: str = "h3") -> Iterator[dict[str, Any]]:
    """The stand-in on `host` (443 and 53/udp of its address), every running host resolving
    through it; yields the
    controller's environment (profile files under tmp) and an S3 client of the account."""
    address = bed.hosts[host].address
    crt, key = certificate(tmp, address)
    bed.exec(host, "mkdir -p /root/test-aws && cat > /root/test-aws/s3.crt", stdin=crt.read_text())
    bed.exec(host, "umask 077; cat > /root/test-aws/s3.key", stdin=key.read_text())
    hosts = up(bed)
    try:
        bed.exec(
            host,
            # on the host's own network: a published port is out of reach of the host's own
            # containers (docker isolates its bridges from each other after the DNAT)
            f"docker run -d --name {NAME} --network host -v /root/test-aws:/certs:ro "
            f"-e AWS_STANDIN_ADDRESS={address} -e AWS_STANDIN_REGION={REGION} "
            f"-e AWS_STANDIN_KEYS={KEY}:{SECRET},{ROLE_KEY}:{ROLE_SECRET} --entrypoint python3 "
            "drfleet-standin/simapp:1.0-cpu /opt/ml/code/standin.py aws",
        )
        for h in hosts:  # the hosts' resolver: what docker's embedded DNS forwards to
            bed.exec(
                h,
                "cp /etc/resolv.conf /etc/resolv.conf.test-aws && "
                f"echo 'nameserver {address}' > /etc/resolv.conf",
            )
        (tmp / "config").write_text(f"[profile deepracer]\nregion = {REGION}\n")
        env = {
            "AWS_CONFIG_FILE": str(tmp / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "credentials"),
            "AWS_ENDPOINT_URL": f"https://{address}",
            "AWS_CA_BUNDLE": str(test_ca()[0]),
        }
        client = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            verify=env["AWS_CA_BUNDLE"],
            region_name=REGION,
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                client.list_buckets()
                break
            except Exception:
                assert time.monotonic() < deadline, "the stand-in AWS did not start"
                time.sleep(0.5)
        yield {"env": env, "client": client, "address": address}
    finally:
        for h in hosts:
            bed.exec(
                h,
                "[ ! -f /etc/resolv.conf.test-aws ] || { cat /etc/resolv.conf.test-aws > "
                "/etc/resolv.conf && rm /etc/resolv.conf.test-aws; }",
                check=False,
            )
        bed.exec(host, f"docker rm -f {NAME}; rm -rf /root/test-aws", check=False)


@contextlib.contextmanager
def instance_roles(bed: TestBed) -> Iterator[None]:
    """Every running host an EC2 instance with a role: the metadata service (imds_standin.py)
    on 169.254.169.254:80, a plain process of the host (the hypervisor's part, so its keys
    are in no file or container of the host), the address on the host's lo."""
    hosts = up(bed)
    try:
        for h in hosts:
            imds_standin.install(
                lambda cmd, h=h: bed.exec(h, cmd),
                {"IMDS_KEY": ROLE_KEY, "IMDS_SECRET": ROLE_SECRET, "IMDS_INSTANCE_ID": f"i-{h}"},
            )
        yield
    finally:
        for h in hosts:
            imds_standin.remove(lambda cmd, h=h: bed.exec(h, cmd, check=False))

"""An AWS account for `drfleet up` and `down`: EC2, IAM, SSM, STS, the Price List and Service
Quotas APIs on one endpoint (AWS_ENDPOINT_URL), and a launcher that boots a test-bed host for
every instance EC2 runs. Which behaviour comes from where:

- moto's server (5.2, the same the S3 stand-in uses) answers EC2, IAM, SSM and STS: instances,
  key pairs, security groups and their rules, tags, instance type offerings per region, roles
  and instance profiles. What moto does not do as AWS does is done here, in front of it:
  - a private address: AWS gives the next free one, never the first four or the last of the
    subnet ("Subnet CIDR blocks", Amazon VPC User Guide); moto draws any. The public address
    is the private one: the bed has no NAT (EC2 gives a public address from its pool).
  - the default VPC is the bed's network: one default subnet per zone, public addresses on
    launch, as EC2 makes a default VPC (there 172.31.0.0/16; here a free /24 of the bed's).
  - RunInstances refuses what EC2 refuses: more vCPUs than the quota of the type's class
    (VcpuLimitExceeded; for spot MaxSpotInstanceCountExceeded), and a spot MaxPrice below
    the zone's price (SpotMaxPriceTooLow), with EC2's messages.
  - DescribeSpotPriceHistory: moto says 0.00001 for everything; here each zone has a price
    (SPOT_SHARE of the on-demand one; the real history moves by the hour).
  - pricing:GetProducts (not in moto): the Price List's aws_v1 document, filtered by
    TERM_MATCH as the API filters, for the on-demand prices in ON_DEMAND (us-east-1 Linux,
    shared tenancy, from aws.amazon.com/ec2/pricing/on-demand).
  - service-quotas:GetServiceQuota for ec2 (moto knows only vpc's): the four vCPU quotas,
    set by the test (`quotas`).
  - ssm:GetParameter of Canonical's public parameters (/aws/service/canonical/ubuntu/...),
    pointing at images owned by Canonical (099720109477) that the launcher boots as that
    Ubuntu release.
- The launcher: for each running instance, a host (build-ubuntu-rootfs.sh) at the instance's
  address, whose cloud-init reads a NoCloud seed written as EC2's datasource would give it
  (instance-id, hostname, the key pair's public key, the user data as RunInstances got it).
  A host that powers itself off ends its instance (InstanceInitiatedShutdownBehavior
  terminate, the --ttl path); an instance terminated through the API loses its host.
- Each host's instance metadata (IMDSv2, imds_standin.py, which names its sources) serves the
  instance's id and life cycle, and on request (`interrupt`, as AWS FIS sends one) a spot
  interruption notice; the instance is terminated when the notice's time comes.
"""

from __future__ import annotations

import base64
import contextlib
import io
import ipaddress
import json
import secrets
import tarfile
import threading
import time
import urllib.parse
import uuid
from datetime import datetime, timezone
from typing import Any

import docker
import docker.errors
from werkzeug.serving import WSGIRequestHandler

from tests.testbed import bed as bedmod
from tests.testbed import imds_standin

ACCOUNT = "123456789012"  # moto's
CANONICAL = "099720109477"
ON_DEMAND = {  # USD per hour, us-east-1, Linux, shared tenancy
    "c5.2xlarge": 0.34,
    "c5.4xlarge": 0.68,
    "c5.9xlarge": 1.53,
    "c6i.4xlarge": 0.68,
    "c7i.4xlarge": 0.714,
    "m5.4xlarge": 0.768,
    "g4dn.xlarge": 0.526,
    "g4dn.2xlarge": 0.752,
    "g5.2xlarge": 1.212,
}
SPOT_SHARE = {"a": 0.38, "b": 0.35, "c": 0.41, "d": 0.44, "e": 0.47, "f": 0.39}
RELEASES = {"24.04": "noble", "22.04": "jammy"}
ZONES = ("a", "b", "c")


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class Ec2StandIn:
    """Start with `with Ec2StandIn(images) as aws:`; `aws.env` points boto3 at it."""

    def __init__(self, images: dict[str, str], region: str = "us-east-1") -> None:
        self.images = images  # Ubuntu release ("24.04") -> test-bed image tag
        self.region = region
        self.quotas = {"L-1216C47A": 64.0, "L-34B43A08": 64.0, "L-DB2E81BA": 8.0, "L-3819A6DF": 8.0}
        self.firstboot_apt = 20  # seconds the first boot holds dpkg's locks
        self.id = f"dfaws{secrets.token_hex(3)}"
        self.client = docker.from_env(timeout=120)
        self.hosts: dict[str, str] = {}  # instance id -> container
        self.amis: dict[str, str] = {}  # ami id -> Ubuntu release
        self._stop = threading.Event()
        self._errors: list[str] = []

    # -- life cycle ---------------------------------------------------------------------
    def __enter__(self) -> Ec2StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Ec2StandIn:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        bedmod.reap_orphans(self.client)
        labels = {bedmod.LABEL: self.id, bedmod.OWNER: bedmod._me()}
        self.network, self.subnet = bedmod.bed_network(self.client, f"{self.id}-net", labels)
        self.labels = labels
        self.moto = DomainDispatcherApplication(create_backend_app)
        self.server = make_server("127.0.0.1", 0, self._app, threaded=True, request_handler=_Quiet)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self._account()
        self.launcher = threading.Thread(target=self._launch_loop, daemon=True)
        self.launcher.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if hasattr(self, "launcher"):
            self.launcher.join(timeout=30)
        if hasattr(self, "server"):
            self.server.shutdown()
        bedmod._remove_bed(self.client, self.id)

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }

    def backend(self) -> Any:
        from moto.ec2.models import ec2_backends

        return ec2_backends[ACCOUNT][self.region]

    def _account(self) -> None:
        """The default VPC on the bed's network; Canonical's images."""
        from moto.ec2.models.amis import Ami

        ec2 = self.backend()
        for vpc in list(ec2.vpcs.values()):
            vpc.is_default = False
        for subnet in ec2.describe_subnets():
            subnet.default_for_az = False
        vpc = ec2.create_vpc(cidr_block=str(self.subnet))
        vpc.is_default = True
        parts = list(self.subnet.subnets(new_prefix=26))
        for letter, cidr in zip(ZONES, parts, strict=False):
            sn = ec2.create_subnet(vpc.id, str(cidr), availability_zone=f"{self.region}{letter}")
            sn.default_for_az = True
            sn.map_public_ip_on_launch = True
        for version, release in RELEASES.items():
            ami = f"ami-{secrets.token_hex(8)}"
            volume = "gp3" if version >= "23.10" else "gp2"
            ec2.amis[ami] = Ami(
                ec2,
                ami_id=ami,
                name=f"ubuntu/images/hvm-ssd-{volume}/ubuntu-{release}-{version}-amd64-server-20251201",
                owner_id=CANONICAL,
                public=True,
                virtualization_type="hvm",
                architecture="x86_64",
                root_device_type="ebs",
                root_device_name="/dev/sda1",
                region_name=self.region,
            )
            self.amis[ami] = version

    def parameter(self, name: str) -> str | None:
        for ami, version in self.amis.items():
            volume = "gp3" if version >= "23.10" else "gp2"
            path = f"/aws/service/canonical/ubuntu/server/{version}/stable/current/amd64/hvm"
            if name == f"{path}/ebs-{volume}/ami-id":
                return ami
        return None

    # -- the API in front of moto -------------------------------------------------------
    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(size) if size else b""
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        answer: tuple[int, str, bytes] | None = None
        if target:
            answer = self._json(target, json.loads(body or b"{}"))
        elif body:
            form = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
            action = form.get("Action")
            if action == "DescribeSpotPriceHistory":
                answer = self._spot_history(form)
            elif action == "RunInstances":
                answer, body = self._run_instances(form, body)
        if answer is not None:
            status, ctype, data = answer
            start_response(
                f"{status} {'OK' if status == 200 else 'Bad Request'}",
                [("Content-Type", ctype), ("Content-Length", str(len(data)))],
            )
            return [data]
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        out = self.moto(environ, start_response)
        if environ.get("HTTP_X_AMZ_TARGET") is None and b"RunInstances" in body:
            self._public_is_private()
        return out

    def _json(self, target: str, req: dict[str, Any]) -> tuple[int, str, bytes] | None:
        ctype = "application/x-amz-json-1.1"
        if target == "AWSPriceListService.GetProducts":
            return 200, ctype, json.dumps(self._products(req)).encode()
        if target == "ServiceQuotasV20190624.GetServiceQuota" and req.get("ServiceCode") == "ec2":
            code = req.get("QuotaCode", "")
            if code not in self.quotas:
                err = {"__type": "NoSuchResourceException", "message": f"{code} not found"}
                return 400, ctype, json.dumps(err).encode()
            quota = {
                "ServiceCode": "ec2",
                "ServiceName": "Amazon Elastic Compute Cloud (Amazon EC2)",
                "QuotaArn": f"arn:aws:servicequotas:{self.region}:{ACCOUNT}:ec2/{code}",
                "QuotaCode": code,
                "Value": self.quotas[code],
                "Unit": "None",
                "Adjustable": True,
                "GlobalQuota": False,
            }
            return 200, ctype, json.dumps({"Quota": quota}).encode()
        if target == "AmazonSSM.GetParameter" and str(req.get("Name", "")).startswith(
            "/aws/service/canonical/"
        ):
            ami = self.parameter(req["Name"])
            if ami is None:
                err = {"__type": "ParameterNotFound", "message": ""}
                return 400, ctype, json.dumps(err).encode()
            param = {
                "Name": req["Name"],
                "Type": "String",
                "Value": ami,
                "Version": 1,
                "LastModifiedDate": time.time(),
                "ARN": f"arn:aws:ssm:{self.region}::parameter{req['Name']}",
                "DataType": "text",
            }
            return 200, ctype, json.dumps({"Parameter": param}).encode()
        return None

    def _products(self, req: dict[str, Any]) -> dict[str, Any]:
        if req.get("ServiceCode") != "AmazonEC2":
            return {"FormatVersion": "aws_v1", "PriceList": []}
        out = []
        for itype, usd in ON_DEMAND.items():
            sku = uuid.uuid5(uuid.NAMESPACE_DNS, itype).hex[:16].upper()
            attrs = {
                "instanceType": itype,
                "regionCode": self.region,
                "location": "US East (N. Virginia)",
                "operatingSystem": "Linux",
                "tenancy": "Shared",
                "preInstalledSw": "NA",
                "capacitystatus": "Used",
                "servicecode": "AmazonEC2",
            }
            if not all(
                f.get("Type") == "TERM_MATCH" and attrs.get(f.get("Field", "")) == f.get("Value")
                for f in req.get("Filters", [])
            ):
                continue
            term = f"{sku}.JRTCKXETXF"
            product = {
                "product": {"productFamily": "Compute Instance", "attributes": attrs, "sku": sku},
                "serviceCode": "AmazonEC2",
                "terms": {
                    "OnDemand": {
                        term: {
                            "offerTermCode": "JRTCKXETXF",
                            "sku": sku,
                            "priceDimensions": {
                                f"{term}.6YS6EN2CT7": {
                                    "unit": "Hrs",
                                    "pricePerUnit": {"USD": f"{usd:.10f}"},
                                    "description": f"${usd} per On Demand Linux {itype} "
                                    "Instance Hour",
                                }
                            },
                        }
                    }
                },
            }
            out.append(json.dumps(product))
        return {"FormatVersion": "aws_v1", "PriceList": out}

    def spot_price(self, itype: str, zone: str) -> float:
        return round(ON_DEMAND[itype] * SPOT_SHARE[zone[-1]], 4)

    def _spot_history(self, form: dict[str, str]) -> tuple[int, str, bytes]:
        types = [v for k, v in form.items() if k.startswith("InstanceType.")] or list(ON_DEMAND)
        zone = form.get("AvailabilityZone")
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        items = []
        for itype in types:
            for letter in ZONES:
                z = f"{self.region}{letter}"
                if itype not in ON_DEMAND or (zone and zone != z):
                    continue
                items.append(
                    f"<item><instanceType>{itype}</instanceType>"
                    "<productDescription>Linux/UNIX</productDescription>"
                    f"<spotPrice>{self.spot_price(itype, z):.6f}</spotPrice>"
                    f"<timestamp>{stamp}</timestamp><availabilityZone>{z}</availabilityZone></item>"
                )
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<DescribeSpotPriceHistoryResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
            f"<requestId>{uuid.uuid4()}</requestId>"
            f"<spotPriceHistorySet>{''.join(items)}</spotPriceHistorySet><nextToken/>"
            "</DescribeSpotPriceHistoryResponse>"
        )
        return 200, "text/xml", xml.encode()

    def _error(self, code: str, message: str) -> tuple[int, str, bytes]:
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error>"
            f"</Errors><RequestID>{uuid.uuid4()}</RequestID></Response>"
        )
        return 400, "text/xml", xml.encode()

    def _run_instances(
        self, form: dict[str, str], body: bytes
    ) -> tuple[tuple[int, str, bytes] | None, bytes]:
        from drfleet.cloud.fleet import quota_code

        itype = form.get("InstanceType", "m1.small")
        count = int(form.get("MinCount", "1"))
        spot = form.get("InstanceMarketOptions.MarketType") == "spot"
        code = quota_code(itype, spot)
        ec2 = self.backend()
        vcpus = ec2.describe_instance_types([itype])[0]["VCpuInfo"]["DefaultVCpus"]
        used = 0
        for r in ec2.describe_instances():
            for i in r.instances:
                if i.state in ("pending", "running"):
                    other = i.lifecycle == "spot"
                    if quota_code(i.instance_type, other) == code:
                        used += ec2.describe_instance_types([i.instance_type])[0]["VCpuInfo"][
                            "DefaultVCpus"
                        ]
        if used + vcpus * count > self.quotas.get(code, 0):
            if spot:
                return self._error(
                    "MaxSpotInstanceCountExceeded", "Max spot instance count exceeded"
                ), body
            message = (
                "You have requested more vCPU capacity than your current vCPU limit of "
                f"{self.quotas.get(code, 0):g} allows for the instance bucket that the specified "
                "instance type belongs to. Please visit "
                "http://aws.amazon.com/contact-us/ec2-request "
                "to request an adjustment to this limit."
            )
            return self._error("VcpuLimitExceeded", message), body
        subnet_id = form.get("NetworkInterface.1.SubnetId") or form.get("SubnetId")
        subnet = ec2.get_subnet(subnet_id) if subnet_id else None
        if spot and subnet is not None:
            cap = form.get("InstanceMarketOptions.SpotOptions.MaxPrice")
            price = self.spot_price(itype, subnet.availability_zone)
            limit = float(cap) if cap else ON_DEMAND.get(itype, 0.0)
            if limit < price:
                message = (
                    f"Your Spot request price of {limit:g} is lower than the minimum required "
                    f"Spot request fulfillment price of {price:g}."
                )
                return self._error("SpotMaxPriceTooLow", message), body
        if subnet is not None and "NetworkInterface.1.PrivateIpAddress" not in form:
            extra = {"NetworkInterface.1.PrivateIpAddress": self._free_address(subnet.cidr)}
            body += b"&" + urllib.parse.urlencode(extra).encode()
        return None, body

    def _free_address(self, cidr: ipaddress.IPv4Network) -> str:
        used = {
            eni.private_ip_address for eni in self.backend().enis.values() if eni.private_ip_address
        }
        for addr in list(cidr.hosts())[3:-1]:  # .0 and the next three, and the last: AWS's
            if str(addr) not in used:
                return str(addr)
        raise RuntimeError(f"no free address in {cidr}")

    def _public_is_private(self) -> None:
        for r in self.backend().describe_instances():
            for i in r.instances:
                nic = i.nics.get(0)
                if nic is not None and nic.public_ip and nic.public_ip != nic.private_ip_address:
                    nic.public_ip = nic.private_ip_address

    # -- the launcher ---------------------------------------------------------------------
    def _launch_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._launch_pass()
            except Exception as exc:  # keep going; a test reads errors()
                self._errors.append(repr(exc))
            self._stop.wait(0.5)

    def errors(self) -> list[str]:
        return list(self._errors)

    def _launch_pass(self) -> None:
        ec2 = self.backend()
        for r in list(ec2.describe_instances()):
            for i in r.instances:
                running = i.state in ("pending", "running")
                if running and i.id not in self.hosts:
                    self._boot(i)
                elif not running and i.id in self.hosts:
                    self._remove(i.id)
                elif running and self._exited(i.id):
                    # powered off from inside: InstanceInitiatedShutdownBehavior decides
                    if i.instance_initiated_shutdown_behavior == "terminate":
                        ec2.terminate_instances([i.id])
                    else:
                        ec2.stop_instances([i.id])
                    self._remove(i.id)

    def _exited(self, instance_id: str) -> bool:
        if not self.hosts[instance_id]:
            return False
        try:
            c = self.client.containers.get(self.hosts[instance_id])
        except docker.errors.NotFound:
            return True
        return c.status == "exited"

    def _boot(self, i: Any) -> None:
        version = self.amis.get(i.image_id)
        if version is None:
            self._errors.append(f"{i.id}: image {i.image_id} is not an Ubuntu image here")
            self.hosts[i.id] = ""
            return
        address = i.private_ip
        hostname = "ip-" + address.replace(".", "-")
        name = f"{self.id}-{i.id}"
        self.hosts[i.id] = ""  # once: a host that cannot be made is an error, not retried
        bedmod.create_host(
            self.client,
            self.images[version],
            name,
            hostname,
            address,
            self.network.name,
            self.labels,
            instance=True,
        )
        self.hosts[i.id] = name  # from here on, _remove cleans it up
        try:
            self.client.api.put_archive(name, "/", self._seed(i, hostname))
            self.client.api.start(name)
            life = "spot" if i.lifecycle == "spot" else "on-demand"
            env = {"IMDS_INSTANCE_ID": i.id, "IMDS_LIFE_CYCLE": life}
            imds_standin.install(lambda cmd: self.run(i.id, cmd), env)
        except Exception:
            self._remove(i.id)
            self.hosts[i.id] = ""  # once: the error is kept, not retried every pass
            raise

    def _seed(self, i: Any, hostname: str) -> bytes:
        """NoCloud's seed, holding what EC2's datasource gives cloud-init."""
        keys = []
        if i.key_name:
            pair = self.backend().describe_key_pairs(key_names=[i.key_name])[0]
            key = pair.material_public
            keys.append(key.decode() if isinstance(key, bytes) else str(key))
        meta = {
            "instance-id": i.id,
            "local-hostname": hostname,
            "public-keys": [k.strip() for k in keys if k],
        }
        user = base64.b64decode(str(i.user_data)) if i.user_data else b""
        files = {
            "var/lib/cloud/seed/nocloud/meta-data": json.dumps(meta).encode(),
            "var/lib/cloud/seed/nocloud/user-data": user,
            "etc/default/drfleet-firstboot-apt": (
                f"DRFLEET_FIRSTBOOT_APT={self.firstboot_apt}\n".encode()
            ),
        }
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for path, data in files.items():
                info = tarfile.TarInfo(path)
                info.size = len(data)
                info.mode = 0o600 if "user-data" in path else 0o644
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    def _remove(self, instance_id: str) -> None:
        name = self.hosts.pop(instance_id, "")
        if not name:
            return
        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_container(name, force=True, v=True)
        for volume in bedmod.volumes(name, instance=True):
            with contextlib.suppress(docker.errors.NotFound):
                self.client.volumes.get(volume).remove(force=True)

    def container(self, instance_id: str) -> str:
        return self.hosts[instance_id]

    def run(self, instance_id: str, command: str) -> str:
        """exec, failing on a non-zero exit."""
        c = self.client.containers.get(self.hosts[instance_id])
        res = c.exec_run(["sh", "-c", command])
        out = res.output.decode(errors="replace")
        if res.exit_code != 0:
            raise RuntimeError(f"{instance_id}: {command[:80]!r} exited {res.exit_code}: {out}")
        return out

    def interrupt(self, instance_id: str, lead: float = 120.0) -> dict[str, str]:
        """A spot interruption as AWS FIS's aws:ec2:send-spot-instance-interruptions makes
        one: the rebalance recommendation and the notice in the instance's metadata, and the
        instance terminated `lead` seconds on (EC2 gives two minutes)."""
        sent = imds_standin.interrupt(lambda cmd: self.run(instance_id, cmd), lead)

        def reclaim() -> None:
            with contextlib.suppress(Exception):
                self.backend().terminate_instances([instance_id])

        timer = threading.Timer(lead, reclaim)
        timer.daemon = True
        timer.start()
        return sent

    def exec(self, instance_id: str, command: str) -> str:
        c = self.client.containers.get(self.hosts[instance_id])
        res = c.exec_run(["sh", "-c", command])
        return res.output.decode(errors="replace")

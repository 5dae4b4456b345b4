#!/usr/bin/env python
"""Stand-in for the simapp's /opt/ml/code/rl_coach/start.py. Mirrors deepracer-simapp
docker/files/rl-coach/start.py (01f5f015): the same environment read the same way, the same
hyperparameters built, and the same job handed to the SageMaker SDK's local mode, whose part
is stood in by `local_fit` below (as sagemaker<3's local mode does it, with
/root/.sagemaker/config.yaml's container_root /tmp/sagemaker).

Like the real one it needs the SageMaker SDK, which lives only in /root/sagemaker-venv: run
without `source /root/sagemaker-venv/bin/activate` first, it fails at its first import."""

import io
import json
import os
import random
import string
import sys
import tempfile

if os.environ.get("VIRTUAL_ENV") != "/root/sagemaker-venv":
    sys.exit(
        "Traceback (most recent call last):\n"
        '  File "/opt/ml/code/rl_coach/start.py", line 3, in <module>\n'
        "    from sagemaker.estimator import Estimator\n"
        "ModuleNotFoundError: No module named 'sagemaker'"
    )

import boto3
import docker

NETWORK = "sagemaker-local"
CONTAINER_ROOT = "/tmp/sagemaker"


def str2bool(v):
    return v.lower() in ("yes", "true", "t", "1")


def local_fit(image, job_name, hyperparameters, env, instance_type, endpoint_url, region):
    """The SDK's local mode (sagemaker 2.257 src/sagemaker/local/image.py: the host
    `algo-1-<5 chars>`, _create_docker_host's container_name `<10 chars>-<host>`, the host as
    its alias on sagemaker-local, the job's environment): a job folder under container_root
    holding input/config/hyperparameters.json (each value JSON-encoded) and the
    docker-compose.yaml compose is run with (which DRfC's stop.sh greps for RUN_ID=), bound
    into that container on the network sagemaker-local, which must carry the compose labels;
    the command is `train`, appended to the image's entrypoint. Blocks until the container
    ends."""
    client = docker.from_env()
    net = client.networks.get(NETWORK)
    if (net.attrs.get("Labels") or {}).get("com.docker.compose.network") != NETWORK:
        sys.exit(
            f"network {NETWORK} was found but has incorrect label "
            f'com.docker.compose.network set to "" (expected: "{NETWORK}")'
        )
    os.makedirs(CONTAINER_ROOT, exist_ok=True)
    root = tempfile.mkdtemp(dir=CONTAINER_ROOT)
    chars = string.ascii_lowercase + string.digits
    host = "algo-1-" + "".join(random.choices(chars, k=5))
    name = "".join(random.choices(chars, k=10)) + "-" + host
    config = os.path.join(root, host, "input", "config")
    os.makedirs(config)
    with open(os.path.join(config, "hyperparameters.json"), "w") as fh:
        json.dump({k: json.dumps(v) for k, v in hyperparameters.items()}, fh)
    environment = dict(env)
    environment["AWS_REGION"] = region
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        if os.environ.get(k):
            environment[k] = os.environ[k]
    if endpoint_url:
        environment["S3_ENDPOINT_URL"] = endpoint_url
    device_requests = None
    if instance_type == "local_gpu":
        device_requests = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    binds = {os.path.join(root, host, "input"): {"bind": "/opt/ml/input", "mode": "rw"}}
    compose = {
        "services": {
            host: {
                "image": image,
                "container_name": name,
                "environment": [f"{k}={v}" for k, v in environment.items()],
                "command": "train",
                "networks": {NETWORK: {"aliases": [host]}},
            }
        },
        "networks": {NETWORK: {"name": NETWORK}},
    }
    with open(os.path.join(root, "docker-compose.yaml"), "w") as fh:
        json.dump(compose, fh, indent=1)  # JSON is YAML
    api = client.api
    created = api.create_container(
        image,
        ["train"],
        name=name,
        environment=environment,
        labels={"com.docker.compose.service": host},
        host_config=api.create_host_config(
            binds=binds, network_mode=NETWORK, device_requests=device_requests
        ),
        networking_config=api.create_networking_config(
            {NETWORK: api.create_endpoint_config(aliases=[host])}
        ),
    )
    container = client.containers.get(created["Id"])
    container.start()
    print(f"Creating {name} ... done", flush=True)
    for line in container.logs(stream=True, follow=True):
        sys.stdout.buffer.write(line)
        sys.stdout.flush()
    sys.exit(container.wait()["StatusCode"])


boto_session = boto3.session.Session(region_name=os.environ.get("AWS_REGION", "us-east-1"))
endpoint_url = os.environ.get("S3_ENDPOINT_URL", None)
if endpoint_url == "":
    s3Client = boto_session.client("s3")
else:
    s3Client = boto_session.client("s3", endpoint_url=endpoint_url)
aws_region = boto_session.region_name

s3_bucket = os.environ.get("MODEL_S3_BUCKET", None)
s3_prefix = os.environ.get("MODEL_S3_PREFIX", None)
pretrained = str2bool(os.environ.get("PRETRAINED", "False"))
s3_pretrained_bucket = os.environ.get("PRETRAINED_S3_BUCKET", "bucket")
s3_pretrained_prefix = os.environ.get("PRETRAINED_S3_PREFIX", "rl-deepracer-pretrained")
hyperparameter_file = os.environ.get(
    "HYPERPARAMETER_FILE_S3_KEY", "custom_files/hyperparameters.json"
)
modelmetadata_file = os.environ.get("MODELMETADATA_FILE_S3_KEY", "custom_files/model_petadata.json")
job_name = s3_prefix
print(f"Model checkpoints and other metadata will be stored at: s3://{s3_bucket}/{job_name}")

sagemaker_image = os.environ.get("SAGEMAKER_IMAGE", None)
instance_type = "local_gpu" if (sagemaker_image.find("gpu") >= 0) else "local"
print(f"Using image {sagemaker_image}")

hyperparameters_core = {
    "s3_bucket": s3_bucket,
    "s3_prefix": s3_prefix,
    "aws_region": aws_region,
    "model_metadata_s3_key": f"s3://{s3_bucket}/{modelmetadata_file}",
}
if pretrained:
    hyperparameters_core["pretrained_s3_bucket"] = f"{s3_pretrained_bucket}"
    hyperparameters_core["pretrained_s3_prefix"] = s3_pretrained_prefix
    hyperparameters_core["pretrained_checkpoint"] = os.environ.get("PRETRAINED_CHECKPOINT", "best")

hyperparameter_data = io.BytesIO()
s3Client.download_fileobj(s3_bucket, hyperparameter_file, hyperparameter_data)
hyperparameters_nn = json.loads(hyperparameter_data.getvalue().decode("utf-8"))
hyperparameters = {**hyperparameters_core, **hyperparameters_nn}
print(f"Configured following hyperparameters:\n{hyperparameters}")

env_var = {"RUN_ID": os.environ.get("RUN_ID", "Unknown"), "SAGEMAKER_PROGRAM": "sage-train.sh"}
telegraf_host = os.environ.get("TELEGRAF_HOST", None)
if telegraf_host is not None:
    env_var["TELEGRAF_HOST"] = telegraf_host
    env_var["TELEGRAF_PORT"] = os.environ.get("TELEGRAF_PORT", "8092")
max_memory_steps = os.environ.get("MAX_MEMORY_STEPS", "")
if max_memory_steps.isdigit():
    env_var["MAX_MEMORY_STEPS"] = max_memory_steps
if instance_type == "local_gpu":
    devices = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if len(devices) > 0:
        env_var["CUDA_VISIBLE_DEVICES"] = devices

local_fit(
    sagemaker_image, job_name, hyperparameters, env_var, instance_type, endpoint_url, aws_region
)

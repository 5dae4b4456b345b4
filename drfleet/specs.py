"""Container specs from a plan: what each host's agent is asked to run (pure).

minio (DR_CLOUD=local) and rl_coach on the trainer; one robomaker per placement, with the
environment of DEEPRACER.md, DOCKER_REPLICA_SLOT = its fleet-wide slot, the same MULTI_CONFIG
for all, `run.sh multi` with several workers, its video port published, and GPU requests or
the X11 socket where its host has them."""

from __future__ import annotations

from typing import Any

from drfleet.drfc.config import TrainingConfig
from drfleet.plan import Capacity, Plan

NETWORK = "sagemaker-local"
FLEET = "drfleet"
MINIO_DATA = "/var/lib/drfleet/minio"
SECRET_KEYS = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "MINIO_ROOT_USER",
        "MINIO_ROOT_PASSWORD",
        "MINIO_ACCESS_KEY",
        "MINIO_SECRET_KEY",
    }
)


def simapp_image(cfg: TrainingConfig, gpu: bool) -> str:
    from drfleet.drfc.images import simapp_images

    images = simapp_images(cfg.system)
    return (
        images["gpu" if gpu else "cpu"]
        if images
        else f"{cfg.get('DR_SIMAPP_SOURCE')}:{cfg.get('DR_SIMAPP_VERSION')}"
    )


def s3_env(cfg: TrainingConfig, creds: dict[str, str]) -> dict[str, str]:
    env = {"AWS_ACCESS_KEY_ID": creds["access_key"], "AWS_SECRET_ACCESS_KEY": creds["secret_key"]}
    if cfg.get("DR_CLOUD", "local").lower() == "local":
        env["S3_ENDPOINT_URL"] = cfg.get("DR_MINIO_URL", "http://minio:9000")
    return env


def build(
    plan: Plan,
    cfg: TrainingConfig,
    caps: dict[str, Capacity],
    creds: dict[str, str],
    params_files: list[str],
    multi_config: str,
    generation: int,
) -> dict[str, Any]:
    """host -> the agent's desired-state document for it."""
    run_id = cfg.get("DR_RUN_ID", "0")
    per_host: dict[str, list[dict[str, Any]]] = {h: [] for h in caps}
    trainer_gpu = caps[plan.trainer].gpus > 0
    if cfg.get("DR_CLOUD", "local").lower() == "local":
        from drfleet.drfc.images import minio_image

        per_host[plan.trainer].append(
            {
                "name": "drfleet-minio",
                "role": "minio",
                "image": minio_image(cfg.system) or "minio/minio:latest",
                "command": ["server", "/data", "--console-address", ":9001"],
                "env": {
                    "MINIO_ROOT_USER": creds["access_key"],
                    "MINIO_ROOT_PASSWORD": creds["secret_key"],
                },
                "networks": [NETWORK],
                "aliases": ["minio"],
                "ports": {"9000/tcp": 9000},
                "mounts": [{"source": MINIO_DATA, "target": "/data"}],
                "restart": "always",
            }
        )
    image = simapp_image(cfg, trainer_gpu)
    per_host[plan.trainer].append(
        {
            "name": "drfleet-rlcoach",
            "role": "rl_coach",
            "image": image,
            "command": [
                "/bin/bash",
                "-c",
                "source /root/sagemaker-venv/bin/activate && "
                "python3 /opt/ml/code/rl_coach/start.py",
            ],
            "working_dir": "/opt/ml/code/",
            "env": {**rl_coach_env(cfg, image, trainer_gpu), **s3_env(cfg, creds)},
            "networks": [NETWORK],
            "mounts": [
                {"source": "/var/run/docker.sock", "target": "/var/run/docker.sock"},
                {"source": "/tmp/sagemaker", "target": "/tmp/sagemaker"},
            ],
            "restart": "on-failure",
        }
    )
    n = len(plan.workers)
    for w in plan.workers:
        cap = caps[w.host]
        gpu = cap.gpus > 0
        spec: dict[str, Any] = {
            "name": f"drfleet-robomaker-{w.slot}",
            "role": "robomaker",
            "image": simapp_image(cfg, gpu),
            "command": [
                "/opt/ml/code/run.sh",
                "multi" if n > 1 else "run",
                "distributed_training.launch.py",
            ],
            "env": {
                **robomaker_env(cfg, w.slot, w.world, w.config_file, multi_config, gpu),
                **s3_env(cfg, creds),
            },
            "networks": [NETWORK],
            "ports": {"8080/tcp": w.video_port},
            "labels": {"drfleet-slot": str(w.slot), "drfleet-world": w.world},
            "restart": "on-failure",
        }
        if gpu:
            spec["gpus"] = -1
        if cap.opengl:
            display = cfg.get("DR_DISPLAY", ":99")
            spec["env"].update(
                {
                    "DISPLAY": display,
                    "USE_EXTERNAL_X": "true",
                    "XAUTHORITY": "/root/.Xauthority",
                    "QT_X11_NO_MITSHM": "1",
                    "NVIDIA_DRIVER_CAPABILITIES": "all",
                }
            )
            spec["mounts"] = [
                {"source": "/tmp/.X11-unix", "target": "/tmp/.X11-unix"},
                {
                    "source": "/var/lib/drfleet/Xauthority",
                    "target": "/root/.Xauthority",
                    "read_only": True,
                },
            ]
        per_host[w.host].append(spec)
    return {
        host: {"fleet": FLEET, "run_id": run_id, "generation": generation, "containers": specs}
        for host, specs in per_host.items()
    }


def rl_coach_env(cfg: TrainingConfig, image: str, gpu: bool) -> dict[str, str]:
    g = cfg.get
    from drfleet.drfc.checks import max_steps

    return {
        "RUN_ID": g("DR_RUN_ID", "0"),
        "AWS_REGION": g("DR_AWS_APP_REGION", "us-east-1"),
        "SAGEMAKER_IMAGE": image,
        "PRETRAINED": g("DR_LOCAL_S3_PRETRAINED", "False"),
        "PRETRAINED_S3_PREFIX": g("DR_LOCAL_S3_PRETRAINED_PREFIX", "rl-sagemaker-pretrained"),
        "PRETRAINED_S3_BUCKET": g("DR_LOCAL_S3_BUCKET", "bucket"),
        "PRETRAINED_CHECKPOINT": g("DR_LOCAL_S3_PRETRAINED_CHECKPOINT", "last"),
        "MODEL_S3_PREFIX": g("DR_LOCAL_S3_MODEL_PREFIX", "rl-deepracer-sagemaker"),
        "MODEL_S3_BUCKET": g("DR_LOCAL_S3_BUCKET", "bucket"),
        "HYPERPARAMETER_FILE_S3_KEY": g(
            "DR_LOCAL_S3_HYPERPARAMETERS_KEY", "custom_files/hyperparameters.json"
        ),
        "MODELMETADATA_FILE_S3_KEY": g(
            "DR_LOCAL_S3_MODEL_METADATA_KEY", "custom_files/model_metadata.json"
        ),
        "CUDA_VISIBLE_DEVICES": g("DR_SAGEMAKER_CUDA_DEVICES", "0") if gpu else "",
        "MAX_MEMORY_STEPS": str(max_steps(cfg)),
    }


def robomaker_env(
    cfg: TrainingConfig, slot: int, world: str, config_file: str, multi_config: str, gpu: bool
) -> dict[str, str]:
    g = cfg.get
    env = {
        "WORLD_NAME": world,
        "SAGEMAKER_SHARED_S3_PREFIX": g("DR_LOCAL_S3_MODEL_PREFIX", "rl-deepracer-sagemaker"),
        "SAGEMAKER_SHARED_S3_BUCKET": g("DR_LOCAL_S3_BUCKET", "bucket"),
        "APP_REGION": g("DR_AWS_APP_REGION", "us-east-1"),
        "S3_YAML_NAME": config_file,
        "KINESIS_VIDEO_STREAM_NAME": g("DR_KINESIS_STREAM_NAME", ""),
        "ENABLE_KINESIS": g("DR_KINESIS_STREAM_ENABLE", "False"),
        "ENABLE_GUI": g("DR_GUI_ENABLE", "False"),
        "CUDA_VISIBLE_DEVICES": g("DR_ROBOMAKER_CUDA_DEVICES", "0") if gpu else "",
        "MULTI_CONFIG": multi_config,
        "RTF_OVERRIDE": g("DR_ROBOMAKER_TRAIN_RTF", ""),
        "GAZEBO_ARGS": g("DR_GAZEBO_ARGS", ""),
        "GAZEBO_RENDER_ENGINE": g("DR_GAZEBO_RENDER_ENGINE", "ogre2"),
        "DOCKER_REPLICA_SLOT": str(slot),
    }
    return {
        k: v
        for k, v in env.items()
        if v != "" or k in ("MULTI_CONFIG", "KINESIS_VIDEO_STREAM_NAME")
    }


def masked(doc: dict[str, Any]) -> dict[str, Any]:
    """A desired state with credentials replaced, for files people read (--dry-run)."""
    out = dict(doc)
    out["containers"] = [
        {**c, "env": {k: ("<secret>" if k in SECRET_KEYS else v) for k, v in c["env"].items()}}
        for c in doc["containers"]
    ]
    return out

"""Container specs from a plan: what each host's agent is asked to run (pure).

Each container is what DRfC's compose files give for the same files (deepracer-for-cloud
`docker/docker-compose-training.yml`, `-endpoint.yml`, `-keys.yml`, `-mount.yml`,
`-local-xorg.yml`, `-simapp.yml`, `-robomaker-scripts.yml`, `bin/activate.sh`,
`scripts/training/start.sh`): the same image, the same environment key for key, the same
mounts and init. The simapp image's entrypoint is `/bin/bash -c`, so every command is ONE
string, the script bash runs, as DRfC's `command: ["${ROBOMAKER_COMMAND}"]` passes it.

Where drfleet differs on purpose (docs/drfc-differences.md): DOCKER_REPLICA_SLOT is set on
every worker to its fleet-wide slot (DRfC's swarm sets it, compose mode elects through
/mnt/comms); WORLD_NAME and S3_YAML_NAME are each worker's own (what run.sh would take from
MULTI_CONFIG); each worker publishes its own video port (and VNC only with DR_GUI_ENABLE);
host X applies to workers on `opengl: true` hosts; and each worker's Gazebo runs on CPUs of
its own host (DRFLEET_GAZEBO_CPUS, read by the taskset shim provision installs)."""

from __future__ import annotations

from typing import Any

from drfleet.drfc import checks
from drfleet.drfc import params as params_mod
from drfleet.drfc.config import TrainingConfig
from drfleet.drfc.images import minio_image, simapp_images
from drfleet.names import (
    EVAL_VIDEO_PORT,
    FLEET,
    MINIO,
    MINIO_DATA,
    MINIO_STACK,
    NETWORK,
    ROBOMAKER_LOGS,
    TASKSET_SHIM,
    XAUTHORITY,
)
from drfleet.runs.placement import Capacity, Placement, Plan

GUI_BASE = 5900
RL_COACH_COMMAND = (
    "source /root/sagemaker-venv/bin/activate && python3 /opt/ml/code/rl_coach/start.py"
)
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
# run.sh's topics: kvs_stream exists only with ENABLE_KINESIS (download_params_and_roslaunch_
# agent.py, publish_to_kinesis_stream), the main and sub cameras only when the params enable
# them; the car's own camera always.
CAMERA_TOPICS = (("main_camera", "CAMERA_MAIN_ENABLE"), ("sub_camera", "CAMERA_SUB_ENABLE"))


def robomaker_command(workers: int) -> list[str]:
    """start.sh: `run.sh multi ...` with several workers, `run.sh run ...` with one."""
    mode = "multi" if workers > 1 else "run"
    return [f"/opt/ml/code/run.sh {mode} distributed_training.launch.py"]


def simapp_image(cfg: TrainingConfig, gpu: bool) -> str:
    images = simapp_images(cfg.system)
    return (
        images["gpu" if gpu else "cpu"]
        if images
        else f"{cfg.setting('DR_SIMAPP_SOURCE')}:{cfg.setting('DR_SIMAPP_VERSION')}"
    )


# docker-compose-aws.yml: DR_CLOUD=aws, where the containers may ask the instance metadata
AWS_ENV = {"AWS_METADATA_SERVICE_TIMEOUT": "3", "AWS_METADATA_SERVICE_NUM_ATTEMPTS": "5"}


def s3_env(cfg: TrainingConfig, creds: dict[str, str]) -> dict[str, str]:
    """docker-compose-aws.yml (DR_CLOUD=aws), docker-compose-keys.yml (unless aws runs on the
    hosts' instance role: no keys) and, with a minio URL, docker-compose-endpoint.yml."""
    env = dict(AWS_ENV) if cfg.storage == "aws" else {}
    if creds:
        env["AWS_ACCESS_KEY_ID"] = creds["access_key"]
        env["AWS_SECRET_ACCESS_KEY"] = creds["secret_key"]
    endpoint = params_mod.minio_url(cfg.values)
    if endpoint is not None:
        env["S3_ENDPOINT_URL"] = endpoint
    return env


def telegraf_env(cfg: TrainingConfig) -> dict[str, str]:
    return {
        "TELEGRAF_HOST": cfg.get("DR_TELEGRAF_HOST"),
        "TELEGRAF_PORT": cfg.get("DR_TELEGRAF_PORT"),
    }


def gazebo_cpus(plan: Plan, caps: dict[str, Capacity]) -> dict[int, str]:
    """slot -> the CPUs its Gazebo server runs on. The simapp pins worker idx to CPUs 2*idx and
    2*idx+1 (empty_world.launch.py), which for a fleet-wide idx can name CPUs its host lacks;
    drfleet numbers the workers of each host 0, 1, ... and gives the i-th CPUs 2i and 2i+1,
    which is what DRfC does on one host. Only when the inventory lowers worker_vcpus below 2
    do two workers share (the numbers wrap around the host's CPUs)."""
    out: dict[int, str] = {}
    for host, placed in plan.by_host().items():
        n = max(1, caps[host].vcpus)
        for i, w in enumerate(sorted(placed, key=lambda p: p.slot)):
            pair = sorted({(2 * i) % n, (2 * i + 1) % n})
            out[w.slot] = ",".join(str(c) for c in pair)
    return out


def topics(values: dict[str, Any], env: dict[str, str]) -> list[str]:
    """The video topics a worker will publish, best first (the viewer's default is the first)."""
    out = (
        ["kvs_stream"]
        if env.get("ENABLE_KINESIS", "True").lower() in ("true", "1", "yes", "t")
        else []
    )
    out += [name for name, key in CAMERA_TOPICS if str(values.get(key, "")).lower() == "true"]
    return [*out, "camera"]


def build(
    plan: Plan,
    cfg: TrainingConfig,
    caps: dict[str, Capacity],
    creds: dict[str, str],
    params: dict[str, dict[str, Any]],
    generation: int,
    staged: dict[str, str] | None = None,
) -> dict[str, Any]:
    """host -> the run's stack for it (DRfC's `deepracer-<DR_RUN_ID>`: rl_coach on the
    trainer, the workers): the agent's desired-state document. `params` is the run's params
    files (name -> content); `staged` maps DR_ROBOMAKER_MOUNT_SIMAPP_DIR / _SCRIPTS_DIR to
    where their copy lies on every worker host. minio is a stack of its own (minio_stack)."""
    staged = staged or {}
    run = checks.run(cfg)
    per_host: dict[str, list[dict[str, Any]]] = {h: [] for h in caps}
    trainer_gpu = caps[plan.trainer].gpus > 0
    image = simapp_image(cfg, trainer_gpu)
    per_host[plan.trainer].append(
        {
            "name": run.rlcoach,
            "role": "rl_coach",
            "image": image,
            "command": [RL_COACH_COMMAND],
            "working_dir": "/opt/ml/code/",
            "env": {**rl_coach_env(cfg, image), **s3_env(cfg, creds)},
            "networks": [NETWORK],
            "mounts": [
                {"source": "/var/run/docker.sock", "target": "/var/run/docker.sock"},
                {"source": "/tmp/sagemaker", "target": "/tmp/sagemaker"},
            ],
            "restart": "on-failure",
        }
    )
    multi_config = params_mod.multi_config(params)
    cpus = gazebo_cpus(plan, caps)
    for w in plan.workers:
        spec = robomaker(cfg, w, caps[w.host], creds, len(plan.workers), multi_config, staged)
        spec["env"]["DRFLEET_GAZEBO_CPUS"] = cpus[w.slot]
        spec["labels"]["drfleet-topics"] = ",".join(topics(params[w.config_file], spec["env"]))
        per_host[w.host].append(spec)
    return {host: stack(run.stack, run.id, generation, specs) for host, specs in per_host.items()}


def stack(name: str, run_id: str, generation: int, containers: list[Any]) -> dict[str, Any]:
    """One stack's desired-state document (the agent replaces that stack alone with it)."""
    return {
        "fleet": FLEET,
        "stack": name,
        "run_id": run_id,
        "generation": generation,
        "containers": containers,
    }


def minio_stack(
    cfg: TrainingConfig, creds: dict[str, str], address: str, generation: int
) -> dict[str, Any]:
    """The S3 stack (DRfC's `s3`): minio alone, shared by every run on the fleet."""
    return stack(MINIO_STACK, "", generation, [minio(cfg, creds, address)])


def minio(cfg: TrainingConfig, creds: dict[str, str], address: str) -> dict[str, Any]:
    """docker-compose-local.yml: the API on 9000 (the console, 9001, is not published), on
    the host's publish_address (127.0.0.1 unless the inventory opens it: the controller
    comes through SSH, workers over the overlay)."""
    return {
        "name": MINIO,
        "role": "minio",
        "image": minio_image(cfg.system) or "minio/minio:latest",
        "command": ["server", "/data", "--console-address", ":9001"],
        "env": {"MINIO_ROOT_USER": creds["access_key"], "MINIO_ROOT_PASSWORD": creds["secret_key"]},
        "networks": [NETWORK],
        "aliases": ["minio"],
        "ports": {"9000/tcp": 9000},
        "publish_address": address,
        "mounts": [{"source": MINIO_DATA, "target": "/data"}],
        "restart": "always",
    }


def robomaker_mounts(
    cfg: TrainingConfig, cap: Capacity, staged: dict[str, str], env: dict[str, Any]
) -> list[dict[str, Any]]:
    """What DRfC's train and eval compose files both add to a robomaker (activate.sh puts the
    same files in DR_TRAIN_COMPOSE_FILE and DR_EVAL_COMPOSE_FILE): the logs
    (docker-compose-mount.yml), the simapp and scripts directories (-simapp.yml,
    -robomaker-scripts.yml; `staged`: where their copies lie on the host) and, on an OpenGL
    host, its X server (-local-xorg.yml, whose variables go into env)."""
    mounts: list[dict[str, Any]] = [
        {"source": TASKSET_SHIM, "target": "/usr/local/bin/taskset", "read_only": True}
    ]
    if cfg.setting("DR_ROBOMAKER_MOUNT_LOGS").lower() == "true":
        prefix = cfg.setting("DR_LOCAL_S3_MODEL_PREFIX")
        mounts.append({"source": f"{ROBOMAKER_LOGS}/{prefix}", "target": "/root/.ros/log"})
    if "DR_ROBOMAKER_MOUNT_SIMAPP_DIR" in staged:
        mounts.append({"source": staged["DR_ROBOMAKER_MOUNT_SIMAPP_DIR"], "target": "/opt/simapp"})
    if "DR_ROBOMAKER_MOUNT_SCRIPTS_DIR" in staged:
        mounts.append({"source": staged["DR_ROBOMAKER_MOUNT_SCRIPTS_DIR"], "target": "/scripts"})
    if cap.opengl:  # docker-compose-local-xorg.yml
        env.update(
            {
                "DISPLAY": cfg.get("DR_DISPLAY") or ":99",
                "USE_EXTERNAL_X": "True",
                "XAUTHORITY": "/root/.Xauthority",
                "QT_X11_NO_MITSHM": "1",
                "NVIDIA_DRIVER_CAPABILITIES": "all",
            }
        )
        mounts += [
            {"source": "/tmp/.X11-unix", "target": "/tmp/.X11-unix"},
            {"source": XAUTHORITY, "target": "/root/.Xauthority", "read_only": True},
        ]
    return mounts


def robomaker(
    cfg: TrainingConfig,
    w: Placement,
    cap: Capacity,
    creds: dict[str, str],
    workers: int,
    multi_config: str,
    staged: dict[str, str],
) -> dict[str, Any]:
    gpu = cap.gpus > 0
    env = {
        **robomaker_env(cfg, w.slot, w.world, w.config_file, multi_config),
        **s3_env(cfg, creds),
    }
    run = checks.run(cfg)
    ports: dict[str, int] = {"8080/tcp": w.video_port}
    if cfg.setting("DR_GUI_ENABLE").lower() == "true":
        ports["5900/tcp"] = GUI_BASE + w.slot - 1 + run.port_offset
    mounts = robomaker_mounts(cfg, cap, staged, env)
    spec: dict[str, Any] = {
        "name": run.robomaker(w.slot),
        "role": "robomaker",
        "image": simapp_image(cfg, gpu),
        "command": robomaker_command(workers),
        "env": env,
        "networks": [NETWORK],
        "ports": ports,
        "publish_address": cap.publish_address,
        "mounts": mounts,
        "init": True,
        "labels": {"drfleet-slot": str(w.slot), "drfleet-world": w.world},
        "restart": "on-failure",
    }
    if gpu:
        spec["gpus"] = -1
    return spec


def evaluation(
    cfg: TrainingConfig,
    cap: Capacity,
    creds: dict[str, str],
    params_name: str,
    cpus: str,
    staged: dict[str, str] | None = None,
) -> dict[str, Any]:
    """docker-compose-eval.yml's robomaker (start.sh: `run.sh run evaluation.launch.py`, the
    eval params as S3_YAML_NAME, ROLLOUT_IDX=0), with the run's S3 env as for training, its
    video on EVAL_VIDEO_PORT and Gazebo on `cpus` of its host (a pair no worker there has),
    and the mounts and X server a worker there gets (robomaker_mounts). Its stack is the
    run's `deepracer-eval-<DR_RUN_ID>`, as DRfC's."""
    s = cfg.setting
    env = {
        "CUDA_VISIBLE_DEVICES": cfg.get("DR_ROBOMAKER_CUDA_DEVICES"),
        "DEBUG_REWARD": cfg.get("DR_EVAL_DEBUG_REWARD"),
        "WORLD_NAME": s("DR_WORLD_NAME"),
        "MODEL_S3_PREFIX": s("DR_LOCAL_S3_MODEL_PREFIX"),
        "MODEL_S3_BUCKET": s("DR_LOCAL_S3_BUCKET"),
        "APP_REGION": s("DR_AWS_APP_REGION"),
        "S3_YAML_NAME": params_name,
        "KINESIS_VIDEO_STREAM_NAME": s("DR_KINESIS_STREAM_NAME"),
        "ENABLE_KINESIS": s("DR_CAMERA_KVS_ENABLE"),
        "ENABLE_GUI": s("DR_GUI_ENABLE"),
        "ROLLOUT_IDX": "0",
        "RTF_OVERRIDE": cfg.get("DR_EVAL_RTF"),
        "ROS_MASTER_URI": "http://localhost:11311/",
        "ROS_IP": "127.0.0.1",
        "GAZEBO_ARGS": cfg.get("DR_GAZEBO_ARGS"),
        "GAZEBO_RENDER_ENGINE": cfg.get("DR_GAZEBO_RENDER_ENGINE") or "ogre2",
        **telegraf_env(cfg),
        **s3_env(cfg, creds),
        "DRFLEET_GAZEBO_CPUS": cpus,
    }
    run = checks.run(cfg)
    ports: dict[str, int] = {"8080/tcp": EVAL_VIDEO_PORT + run.port_offset}
    if s("DR_GUI_ENABLE").lower() == "true":
        ports["5900/tcp"] = GUI_BASE - 1 + run.port_offset
    spec: dict[str, Any] = {
        "name": run.evaluation,
        "role": "evaluation",
        "image": simapp_image(cfg, cap.gpus > 0),
        "command": ["/opt/ml/code/run.sh run evaluation.launch.py"],
        "env": env,
        "networks": [NETWORK],
        "ports": ports,
        "publish_address": cap.publish_address,
        "mounts": robomaker_mounts(cfg, cap, staged or {}, env),
        "init": True,
        "labels": {"drfleet-world": s("DR_WORLD_NAME")},
        # never restarted, failed or not, as DRfC runs it (docker-compose-eval.yml has no
        # restart; -eval-swarm.yml: restart_policy condition none): a failed evaluation is
        # reported with its exit status, not run again over its own results
        "restart": "never",
    }
    if cap.gpus > 0:
        spec["gpus"] = -1
    return spec


def rl_coach_env(cfg: TrainingConfig, image: str) -> dict[str, str]:
    """docker-compose-training.yml, service rl_coach."""
    s = cfg.setting
    return {
        "RUN_ID": checks.run(cfg).id,
        "AWS_REGION": s("DR_AWS_APP_REGION"),
        "SAGEMAKER_IMAGE": image,
        "PRETRAINED": s("DR_LOCAL_S3_PRETRAINED"),
        "PRETRAINED_S3_PREFIX": s("DR_LOCAL_S3_PRETRAINED_PREFIX"),
        "PRETRAINED_S3_BUCKET": s("DR_LOCAL_S3_BUCKET"),
        "PRETRAINED_CHECKPOINT": s("DR_LOCAL_S3_PRETRAINED_CHECKPOINT"),
        "MODEL_S3_PREFIX": s("DR_LOCAL_S3_MODEL_PREFIX"),
        "MODEL_S3_BUCKET": s("DR_LOCAL_S3_BUCKET"),
        "HYPERPARAMETER_FILE_S3_KEY": s("DR_LOCAL_S3_HYPERPARAMETERS_KEY"),
        "MODELMETADATA_FILE_S3_KEY": s("DR_LOCAL_S3_MODEL_METADATA_KEY"),
        "CUDA_VISIBLE_DEVICES": cfg.get("DR_SAGEMAKER_CUDA_DEVICES"),
        "MAX_MEMORY_STEPS": cfg.get("DR_TRAIN_MAX_STEPS_PER_ITERATION"),
        **telegraf_env(cfg),
    }


def robomaker_env(
    cfg: TrainingConfig, slot: int, world: str, config_file: str, multi_config: str
) -> dict[str, str]:
    """docker-compose-training.yml, service robomaker, and -training-swarm.yml's
    DOCKER_REPLICA_SLOT. MULTI_CONFIG is passed only when start.sh exports it."""
    s = cfg.setting
    env = {
        "WORLD_NAME": world,
        "SAGEMAKER_SHARED_S3_PREFIX": s("DR_LOCAL_S3_MODEL_PREFIX"),
        "SAGEMAKER_SHARED_S3_BUCKET": s("DR_LOCAL_S3_BUCKET"),
        "APP_REGION": s("DR_AWS_APP_REGION"),
        "S3_YAML_NAME": config_file,
        "KINESIS_VIDEO_STREAM_NAME": s("DR_KINESIS_STREAM_NAME"),
        "ENABLE_KINESIS": s("DR_CAMERA_KVS_ENABLE"),
        "ENABLE_GUI": s("DR_GUI_ENABLE"),
        "CUDA_VISIBLE_DEVICES": cfg.get("DR_ROBOMAKER_CUDA_DEVICES"),
        "RTF_OVERRIDE": cfg.get("DR_TRAIN_RTF"),
        "ROS_MASTER_URI": "http://localhost:11311/",
        "ROS_IP": "127.0.0.1",
        "GAZEBO_ARGS": cfg.get("DR_GAZEBO_ARGS"),
        "GAZEBO_RENDER_ENGINE": cfg.get("DR_GAZEBO_RENDER_ENGINE") or "ogre2",
        **telegraf_env(cfg),
        "DOCKER_REPLICA_SLOT": str(slot),
    }
    if multi_config:
        env["MULTI_CONFIG"] = multi_config
    return env


def masked(doc: dict[str, Any]) -> dict[str, Any]:
    """A desired state with credentials replaced, for files people read (--dry-run)."""
    out = dict(doc)
    out["containers"] = [
        {**c, "env": {k: ("<secret>" if k in SECRET_KEYS else v) for k, v in c["env"].items()}}
        for c in doc["containers"]
    ]
    return out


def owned(docs: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    """Every container of the run labelled with whose it is (RUN_LABELS: the env dir's
    identity, where that env dir is, the model prefix, DR_RUN_ID)."""
    return {
        host: {
            **doc,
            "containers": [
                {**c, "labels": {**c.get("labels", {}), **labels}} for c in doc["containers"]
            ],
        }
        for host, doc in docs.items()
    }

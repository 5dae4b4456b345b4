"""The names drfleet gives things on a host: containers, networks, paths. Written once here;
every module that names one of them imports it (the agent, shipped alone, keeps its own
default state dir, drfleet_agent.store.DEFAULT_DIR, which equals STATE_DIR)."""

from __future__ import annotations

FLEET = "drfleet"  # the agent's fleet label: containers of other fleets are never touched

# containers
RLCOACH = "drfleet-rlcoach"
MINIO = "drfleet-minio"
ROBOMAKER_PREFIX = "drfleet-robomaker-"
EVALUATION = "drfleet-eval"  # the evaluation's robomaker (DRfC's deepracer-eval stack)
EVAL_VIDEO_PORT = 8078  # its web_video_server on the host, below the workers' 8079+slot
SAGEMAKER_PATTERN = "^algo-[0-9]+-"  # the trainer rl_coach starts through SageMaker local mode

# labels naming the run a container belongs to (specs.owned): another env dir's train is
# refused where they run, naming that run
RUN_LABEL = "drfleet-run"  # the env dir's identity (runstate.identity)
RUN_ENV_LABEL = "drfleet-env"  # controller:path of that env dir
RUN_PREFIX_LABEL = "drfleet-prefix"  # its DR_LOCAL_S3_MODEL_PREFIX

# the network DRfC's containers share (sagemaker-local; an attachable overlay across hosts)
NETWORK = "sagemaker-local"

# paths on a host
STATE_DIR = "/var/lib/drfleet"  # the agent's state, minio's data, shipped files
PENDING_HANDLERS = f"{STATE_DIR}/pending-handlers"
MINIO_DATA = f"{STATE_DIR}/minio"
XAUTHORITY = f"{STATE_DIR}/Xauthority"
STAGED_FILES = f"{STATE_DIR}/files"  # directories shipped to worker hosts, by digest
ROBOMAKER_LOGS = f"{STATE_DIR}/logs/robomaker"
LIB_DIR = "/usr/local/lib/drfleet"
AGENT_PYZ = f"{LIB_DIR}/drfleet-agent.pyz"
AGENT_UNIT = "/etc/systemd/system/drfleet-agent.service"
TASKSET_SHIM = f"{LIB_DIR}/taskset"


def robomaker_name(slot: int) -> str:
    return f"{ROBOMAKER_PREFIX}{slot}"


def slot_of(name: str) -> int | None:
    """The slot of a robomaker container's name, else None."""
    if not name.startswith(ROBOMAKER_PREFIX):
        return None
    tail = name[len(ROBOMAKER_PREFIX) :]
    return int(tail) if tail.isdigit() else None

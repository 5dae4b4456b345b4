"""The names drfleet gives things on a host: containers, networks, paths. Written once here;
every module that names one of them imports it (the agent, shipped alone, keeps its own
default state dir, drfleet_agent.store.DEFAULT_DIR, which equals STATE_DIR)."""

from __future__ import annotations

from dataclasses import dataclass

FLEET = "drfleet"  # the agent's fleet label: containers of other fleets are never touched

# containers
MINIO = "drfleet-minio"
EVAL_VIDEO_PORT = 8078  # its web_video_server on the host, below the workers' 8079+slot
# the trainer rl_coach starts through SageMaker's local mode: `<10 chars>-algo-<i>-<5 chars>`
# (sagemaker 2.x local/image.py, _create_docker_host's container_name)
SAGEMAKER_PATTERN = "-algo-[0-9]+-[a-z0-9]+$"

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
METRICS_DATA = f"{STATE_DIR}/metrics"  # the metrics stack's InfluxDB
IMAGE_PINS = f"{STATE_DIR}/images.json"  # tag -> id as provisioning verified it (the agent's)
XAUTHORITY = f"{STATE_DIR}/Xauthority"
STAGED_FILES = f"{STATE_DIR}/files"  # directories shipped to worker hosts, by digest
LOGS = f"{STATE_DIR}/logs"  # DRfC's data/logs: what log analysis sees as /workspace/logs
ROBOMAKER_LOGS = f"{LOGS}/robomaker"  # DR_ROBOMAKER_MOUNT_LOGS: <prefix>/ per run, as DRfC's
ANALYSIS_DATA = f"{STATE_DIR}/analysis"  # DRfC's data/analysis: the notebooks' own folder
ANALYSIS_AWS = f"{STATE_DIR}/analysis-aws"  # the analysis container's ~/.aws: the run's S3
LIB_DIR = "/usr/local/lib/drfleet"
AGENT_PYZ = f"{LIB_DIR}/drfleet-agent.pyz"
AGENT_UNIT = "/etc/systemd/system/drfleet-agent.service"
TASKSET_SHIM = f"{LIB_DIR}/taskset"


MINIO_STACK = "s3"  # minio alone, shared by every run on the fleet (DRfC's s3 stack)
METRICS_STACK = "metrics"  # Telegraf, InfluxDB, Grafana (DRfC's deepracer-metrics)
ANALYSIS_STACK = "log-analysis"  # the Jupyter container (DRfC's deepracer-analysis)
RUN_PORT_STEP = 100  # run N publishes its ports N * 100 above run 0's


@dataclass(frozen=True)
class Run:
    """The names and ports of one run (DR_RUN_ID): its stacks, as DRfC's `deepracer-<id>`
    and `deepracer-eval-<id>`, and its containers. Run 0 keeps drfleet's first names
    (drfleet-rlcoach, drfleet-robomaker-<slot>, drfleet-eval), so a run that was live before
    runs had names goes on untouched; run N's are drfleet-<N>-rlcoach and so on."""

    id: str = "0"

    @property
    def prefix(self) -> str:
        return "drfleet-" if self.id == "0" else f"drfleet-{self.id}-"

    @property
    def stack(self) -> str:
        return f"deepracer-{self.id}"

    @property
    def eval_stack(self) -> str:
        return f"deepracer-eval-{self.id}"

    @property
    def rlcoach(self) -> str:
        return f"{self.prefix}rlcoach"

    @property
    def evaluation(self) -> str:
        return f"{self.prefix}eval"

    def robomaker(self, slot: int) -> str:
        return f"{self.prefix}robomaker-{slot}"

    @property
    def port_offset(self) -> int:
        return RUN_PORT_STEP * int(self.id)


def slot_of(name: str) -> int | None:
    """The slot of a robomaker container's name (of any run), else None."""
    head, sep, tail = name.rpartition("robomaker-")
    return (
        int(tail)
        if sep and head.startswith("drfleet-") and tail.isascii() and tail.isdigit()
        else None
    )

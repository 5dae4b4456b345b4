"""Every DR_* variable DRfC knows, and what drfleet does with it (pure).

Read from deepracer-for-cloud at commit 2eb1a1f: the templates (`defaults/template-system.env`,
`template-run.env`, `template-worker.env`), `bin/activate.sh`, `scripts/training/start.sh`,
`scripts/training/prepare-config.py` and `docker/docker-compose-*.yml`. Each entry is one of:

- HONOURED: drfleet uses it as DRfC does (`where` says where);
- DIFFERS: drfleet uses it, differently on purpose (`where` says how; docs/drfc-differences.md
  says why);
- UNSUPPORTED: drfleet does not act on it; a value other than DRfC's template default is named
  in a warning by `plan` and `train`;
- NOT_TRAINING: used by a DRfC command that is not training (evaluation, upload, log analysis);
  DRfC's training ignores it too, and so does drfleet's;
- DERIVED: DRfC computes it (activate.sh / start.sh) and overwrites whatever a file says; a
  value in a file is named in a warning, since it has no effect in either tool;
- LEGACY: a name DRfC no longer reads; set in a file, it is named in a warning with its
  successor.

`default` is the value DRfC's template writes (init.sh fills the <...> placeholders), or None
where the template leaves the variable out: it is what a missing key means to drfleet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from drfleet.errors import did_you_mean, paren

HONOURED = "honoured"
DIFFERS = "differs"
UNSUPPORTED = "unsupported"
NOT_TRAINING = "not used by training"
DERIVED = "computed by DRfC"
LEGACY = "legacy name"


@dataclass(frozen=True)
class Setting:
    status: str
    where: str
    default: str | None = None
    said: bool = False  # DIFFERS: a value other than the default is named, with what drfleet does


def _h(where: str, default: str | None = None) -> Setting:
    return Setting(HONOURED, where, default)


P = "training params YAML"
RB = "robomaker env"
RC = "rl_coach env"

TABLE: dict[str, Setting] = {
    # --- system.env (template-system.env) ---
    "DR_CLOUD": Setting(
        DIFFERS,
        "local and azure: minio on the trainer; remote: DR_REMOTE_MINIO_URL; aws: the "
        "profile's keys or every host's own instance role",
        "local",
    ),
    "DR_AWS_APP_REGION": _h(f"{P} AWS_REGION; {RC} AWS_REGION; {RB} APP_REGION", "us-east-1"),
    "DR_UPLOAD_S3_PROFILE": Setting(NOT_TRAINING, "dr-upload-model", "default"),
    "DR_UPLOAD_S3_BUCKET": Setting(NOT_TRAINING, "dr-upload-model", "not-defined"),
    "DR_LOCAL_S3_BUCKET": _h(
        f"{P}; {RC} MODEL_S3_BUCKET; {RB} SAGEMAKER_SHARED_S3_BUCKET", "bucket"
    ),
    "DR_LOCAL_S3_PROFILE": Setting(
        DIFFERS,
        "remote and aws: this AWS profile, for the controller and the containers (aws: its "
        "keys, or the hosts' instance roles when its credentials are temporary); local: "
        "minio takes this profile's keys when this machine has it, as DRfC's activate.sh "
        "reads them, else drfleet makes its own (.drfleet/; train's notes say which)",
        "minio",
    ),
    "DR_GUI_ENABLE": _h(f"{RB} ENABLE_GUI; VNC port 5900 published", "False"),
    "DR_KINESIS_STREAM_NAME": _h(f"{P} and {RB} KINESIS_VIDEO_STREAM_NAME", ""),
    "DR_CAMERA_MAIN_ENABLE": _h(f"{P} CAMERA_MAIN_ENABLE", "True"),
    "DR_CAMERA_SUB_ENABLE": _h(f"{P} CAMERA_SUB_ENABLE", "False"),
    "DR_CAMERA_KVS_ENABLE": _h(f"{RB} ENABLE_KINESIS (the kvs_stream video topic)", "True"),
    "DR_ENABLE_EXTRA_KVS_OVERLAY": _h(f"{P} ENABLE_EXTRA_KVS_OVERLAY", "False"),
    "DR_SIMAPP_SOURCE": _h("image of every container", "awsdeepracercommunity/deepracer-simapp"),
    "DR_SIMAPP_VERSION": Setting(
        DIFFERS,
        "image tag; a GPU host gets the -gpu flavour of the version, a CPU host -cpu",
        "6.0.4-cpu",
    ),
    "DR_MINIO_IMAGE": _h("minio image tag on the trainer", "latest"),
    "DR_ANALYSIS_IMAGE": Setting(NOT_TRAINING, "dr-start-loganalysis", "cpu"),
    "DR_WORKERS": _h("number of robomaker workers", "1"),
    "DR_ROBOMAKER_MOUNT_LOGS": _h("robomaker /root/.ros/log on the host's data dir", "False"),
    "DR_ROBOMAKER_MOUNT_SIMAPP_DIR": _h("shipped to every worker host, mounted at /opt/simapp"),
    "DR_ROBOMAKER_MOUNT_SCRIPTS_DIR": _h("shipped to every worker host, mounted at /scripts"),
    "DR_CLOUD_WATCH_ENABLE": Setting(UNSUPPORTED, "CloudWatch log driver", "False"),
    "DR_CLOUD_WATCH_LOG_STREAM_PREFIX": Setting(UNSUPPORTED, "CloudWatch log driver", ""),
    "DR_DOCKER_STYLE": Setting(
        DIFFERS,
        "drfleet's agent runs plain containers on every host and swarm carries only the "
        "overlay network; there is no compose mode",
        "swarm",
        said=True,
    ),
    "DR_HOST_X": Setting(
        DIFFERS, "host X for workers on inventory hosts with opengl: true", "False"
    ),
    "DR_WEBVIEWER_PORT": _h("the port of `drfleet viewer`'s page (--port overrides it)", "8100"),
    "DR_QUIET_ACTIVATE": Setting(
        NOT_TRAINING, "activate.sh's summary; drfleet has no activate", "False"
    ),
    "DR_DISPLAY": _h(f"{RB} DISPLAY on opengl hosts (default :99, drfleet's Xorg)"),
    "DR_REMOTE_MINIO_URL": _h("DR_CLOUD=remote: the S3 API of the controller and S3_ENDPOINT_URL"),
    "DR_ROBOMAKER_CUDA_DEVICES": _h(f"{RB} CUDA_VISIBLE_DEVICES"),
    "DR_SAGEMAKER_CUDA_DEVICES": _h(f"{RC} CUDA_VISIBLE_DEVICES"),
    "DR_EXPERIMENT_NAME": _h("experiments/<name>/ holds run.env, worker-N.env, custom_files"),
    "DR_TELEGRAF_HOST": _h(f"{RC} and {RB} TELEGRAF_HOST"),
    "DR_TELEGRAF_PORT": _h(f"{RC} and {RB} TELEGRAF_PORT"),
    "DR_DROA_URL": Setting(NOT_TRAINING, "the DRoA site of the droa-* commands (--url)"),
    "DR_DROA_USERNAME": Setting(NOT_TRAINING, "the DRoA login of the droa-* commands"),
    "DR_DROA_DEBUG": Setting(
        NOT_TRAINING, "the droa-* commands say each request on stderr (never a key)"
    ),
    # --- run.env (template-run.env) ---
    "DR_RUN_ID": _h(f"{RC} RUN_ID; the run's stacks, container names and ports (0-99)", "0"),
    "DR_WORLD_NAME": _h(f"{P} WORLD_NAME; {RB} WORLD_NAME", "reinvent_base"),
    "DR_RACE_TYPE": _h(f"{P} RACE_TYPE", "TIME_TRIAL"),
    "DR_CAR_NAME": _h(f"{P} CAR_NAME", "FastCar"),
    "DR_CAR_BODY_SHELL_TYPE": _h(f"{P} BODY_SHELL_TYPE", "deepracer"),
    "DR_CAR_COLOR": _h(f"{P} CAR_COLOR", "Red"),
    "DR_DISPLAY_NAME": _h(f"{P} DISPLAY_NAME", "FastCar"),
    "DR_RACER_NAME": _h(f"{P} RACER_NAME", "FastCar"),
    "DR_ENABLE_DOMAIN_RANDOMIZATION": _h(f"{P} ENABLE_DOMAIN_RANDOMIZATION", "False"),
    "DR_TRAIN_CHANGE_START_POSITION": _h(f"{P} CHANGE_START_POSITION", "True"),
    "DR_TRAIN_REVERSE_DIRECTION": _h(f"{P} REVERSE_DIR", "False"),
    "DR_TRAIN_ALTERNATE_DRIVING_DIRECTION": _h(f"{P} ALTERNATE_DRIVING_DIRECTION", "False"),
    "DR_TRAIN_START_POSITION_OFFSET": _h(f"{P} START_POSITION_OFFSET", "0.0"),
    "DR_TRAIN_ROUND_ROBIN_ADVANCE_DIST": _h(f"{P} ROUND_ROBIN_ADVANCE_DIST", "0.05"),
    "DR_TRAIN_MULTI_CONFIG": _h("one params file per worker (worker-N.env), MULTI_CONFIG", "False"),
    "DR_TRAIN_MIN_EVAL_TRIALS": _h(f"{P} MIN_EVAL_TRIALS", "5"),
    "DR_TRAIN_BEST_MODEL_METRIC": _h(f"{P} BEST_MODEL_METRIC", "progress"),
    "DR_TRAIN_RTF": _h(f"{RB} RTF_OVERRIDE"),
    "DR_TRAIN_MAX_STEPS_PER_ITERATION": _h(f"{RC} MAX_MEMORY_STEPS"),
    "DR_LOCAL_S3_MODEL_PREFIX": _h(f"{P}; {RC} MODEL_S3_PREFIX; {RB}", "rl-deepracer-sagemaker"),
    "DR_LOCAL_S3_PRETRAINED": _h(f"{RC} PRETRAINED", "False"),
    "DR_LOCAL_S3_PRETRAINED_PREFIX": _h(f"{RC} PRETRAINED_S3_PREFIX", "rl-sagemaker-pretrained"),
    "DR_LOCAL_S3_PRETRAINED_CHECKPOINT": _h(f"{RC} PRETRAINED_CHECKPOINT", "last"),
    "DR_LOCAL_S3_CUSTOM_FILES_PREFIX": _h("where custom_files/ are uploaded", "custom_files"),
    "DR_LOCAL_S3_TRAINING_PARAMS_FILE": _h(
        f"{P} file name; {RB} S3_YAML_NAME", "training_params.yaml"
    ),
    "DR_LOCAL_S3_MODEL_METADATA_KEY": _h(
        f"{P} MODEL_METADATA_FILE_S3_KEY; {RC} MODELMETADATA_FILE_S3_KEY",
        "custom_files/model_metadata.json",
    ),
    "DR_LOCAL_S3_HYPERPARAMETERS_KEY": _h(
        f"{RC} HYPERPARAMETER_FILE_S3_KEY", "custom_files/hyperparameters.json"
    ),
    "DR_LOCAL_S3_REWARD_KEY": _h(f"{P} REWARD_FILE_S3_KEY", "custom_files/reward_function.py"),
    "DR_LOCAL_S3_METRICS_PREFIX": _h(
        f"{P} METRICS_S3_OBJECT_KEY", "rl-deepracer-sagemaker/metrics"
    ),
    "DR_LOCAL_S3_EVAL_PARAMS_FILE": _h(
        "drfleet evaluate: the eval params file under the model prefix", "evaluation_params.yaml"
    ),
    "DR_UPLOAD_S3_PREFIX": Setting(NOT_TRAINING, "dr-upload-model", "rl-deepracer-sagemaker-1"),
    "DR_OA_NUMBER_OF_OBSTACLES": _h(f"{P} NUMBER_OF_OBSTACLES (OBJECT_AVOIDANCE)", "6"),
    "DR_OA_MIN_DISTANCE_BETWEEN_OBSTACLES": _h(f"{P} (OBJECT_AVOIDANCE)", "2.0"),
    "DR_OA_RANDOMIZE_OBSTACLE_LOCATIONS": _h(f"{P} (OBJECT_AVOIDANCE)", "False"),
    "DR_OA_IS_OBSTACLE_BOT_CAR": _h(f"{P} (OBJECT_AVOIDANCE)", "False"),
    "DR_OA_OBSTACLE_TYPE": _h(f"{P} (OBJECT_AVOIDANCE)", "box_obstacle"),
    "DR_OA_OBJECT_POSITIONS": _h(f"{P} OBJECT_POSITIONS (OBJECT_AVOIDANCE)", ""),
    "DR_H2B_IS_LANE_CHANGE": _h(f"{P} (HEAD_TO_BOT)", "False"),
    "DR_H2B_LOWER_LANE_CHANGE_TIME": _h(f"{P} (HEAD_TO_BOT)", "3.0"),
    "DR_H2B_UPPER_LANE_CHANGE_TIME": _h(f"{P} (HEAD_TO_BOT)", "5.0"),
    "DR_H2B_LANE_CHANGE_DISTANCE": _h(f"{P} (HEAD_TO_BOT)", "1.0"),
    "DR_H2B_NUMBER_OF_BOT_CARS": _h(f"{P} (HEAD_TO_BOT)", "3"),
    "DR_H2B_MIN_DISTANCE_BETWEEN_BOT_CARS": _h(f"{P} (HEAD_TO_BOT)", "2.0"),
    "DR_H2B_RANDOMIZE_BOT_CAR_LOCATIONS": _h(f"{P} (HEAD_TO_BOT)", "False"),
    "DR_H2B_BOT_CAR_SPEED": _h(f"{P} (HEAD_TO_BOT)", "0.2"),
    "DR_H2B_BOT_CAR_PENALTY": _h(f"{P} PENALTY_SECONDS (HEAD_TO_BOT)", "5.0"),
    # read by the compose files, not in the templates
    "DR_GAZEBO_ARGS": _h(f"{RB} GAZEBO_ARGS"),
    "DR_GAZEBO_RENDER_ENGINE": _h(f"{RB} GAZEBO_RENDER_ENGINE (default ogre2)"),
    # legacy fallbacks prepare-config.py still reads
    "DR_ALTERNATE_DRIVING_DIRECTION": _h(
        f"{P} (when DR_TRAIN_ALTERNATE_DRIVING_DIRECTION is unset)"
    ),
    "DR_CHANGE_START_POSITION": _h(f"{P} (when DR_TRAIN_CHANGE_START_POSITION is unset)"),
}

# Evaluation settings (template-run.env): used by dr-start-evaluation only.
for _k, _v in {
    "NUMBER_OF_TRIALS": "3",
    "IS_CONTINUOUS": "True",
    "MAX_RESETS": "100",
    "OFF_TRACK_PENALTY": "5.0",
    "COLLISION_PENALTY": "5.0",
    "SAVE_MP4": "False",
    "CHECKPOINT": "last",
    "OPP_S3_MODEL_PREFIX": "rl-deepracer-sagemaker",
    "OPP_CAR_BODY_SHELL_TYPE": "deepracer",
    "OPP_CAR_NAME": "FasterCar",
    "OPP_DISPLAY_NAME": "FasterCar",
    "OPP_RACER_NAME": "FasterCar",
    "DEBUG_REWARD": "False",
    "RESET_BEHIND_DIST": "1.0",
    "REVERSE_DIRECTION": "False",
    "RTF": "1.0",
    "OPP_S3_METRICS_PREFIX": "",
    "OPP_MODEL_PREFIX": "",
}.items():
    TABLE[f"DR_EVAL_{_k}"] = (
        Setting(NOT_TRAINING, "read by no DRfC script", _v)
        if _k == "OPP_CAR_NAME"
        # the template sets it, but prepare-config.py reads DR_COLLISION_PENALTY: evaluate warns
        else Setting(
            NOT_TRAINING, "read by no DRfC script: evaluation reads DR_COLLISION_PENALTY", _v
        )
        if _k == "COLLISION_PENALTY"
        else _h("drfleet evaluate: the eval params YAML or the evaluation's env", _v)
    )
TABLE["DR_COLLISION_PENALTY"] = _h("drfleet evaluate: eval params COLLISION_PENALTY")

# Computed by activate.sh / start.sh / init.sh: a value in a file has no effect in DRfC either.
for _k in [
    "DR_DIR",
    "DR_CONFIG",
    "DR_CURRENT_PARAMS_FILE",
    "DR_DOCKER_FILE_SEP",
    "DR_DOCKER_MAJOR_VERSION",
    "DR_TRAIN_COMPOSE_FILE",
    "DR_EVAL_COMPOSE_FILE",
    "DR_MINIO_COMPOSE_FILE",
    "DR_LOCAL_PROFILE_ENDPOINT_URL",
    "DR_LOCAL_S3_ENDPOINT_URL",
    "DR_MINIO_URL",
    "DR_LOCAL_S3_AUTH_MODE",
    "DR_LOCAL_ACCESS_KEY_ID",
    "DR_LOCAL_SECRET_ACCESS_KEY",
    "DR_UPLOAD_PROFILE",
    "DR_MOUNT_DIR",
    "DR_ROBOMAKER_TRAIN_PORT",
    "DR_ROBOMAKER_EVAL_PORT",
    "DR_ROBOMAKER_GUI_PORT",
    "DR_NGINX_CONF",
    "DR_VIEWER_HTML",
    "DR_OPT_EXPERIMENT",
    "DR_BUCKET",
    "DR_BUCKET_ROLE",
]:
    TABLE[_k] = Setting(DERIVED, "computed from other settings")

LEGACY_NAMES = {
    "DR_KINESIS_STREAM_ENABLE": "DR_CAMERA_KVS_ENABLE",
    "DR_ROBOMAKER_TRAIN_RTF": "DR_TRAIN_RTF",
    "DR_SAGEMAKER_IMAGE": "DR_SIMAPP_SOURCE and DR_SIMAPP_VERSION",
    "DR_ROBOMAKER_IMAGE": "DR_SIMAPP_SOURCE and DR_SIMAPP_VERSION",
    "DR_COACH_IMAGE": "DR_SIMAPP_SOURCE and DR_SIMAPP_VERSION",
    "DR_USE_GUI": "DR_GUI_ENABLE",
}
for _k, _new in LEGACY_NAMES.items():
    TABLE[_k] = Setting(LEGACY, f"use {_new}")

SECRET_LIKE = ("KEY", "SECRET", "PASSWORD", "TOKEN")


def default(key: str) -> str | None:
    s = TABLE.get(key)
    return s.default if s else None


def _truthy_equal(a: str, b: str) -> bool:
    return a.strip().lower() == b.strip().lower()


def warnings(values: Mapping[str, str], where: Mapping[str, str]) -> list[str]:
    """One line per setting a user's files give that drfleet will not act on. `where` maps a
    key to `file:line`. Values of secret-like names are never echoed."""
    out = []
    for key, value in values.items():
        if not key.startswith("DR_"):
            continue
        at = where.get(key, "")
        prefix = f"{at}: " if at else ""
        shown = "<hidden>" if any(s in key for s in SECRET_LIKE) else value
        s = TABLE.get(key)
        if s is None:
            hint = paren(did_you_mean(key, TABLE, quote=False))
            out.append(f"{prefix}{key} is not a DRfC setting and is ignored{hint}")
        elif s.status == UNSUPPORTED:
            if s.default is None and value == "":
                continue
            if s.default is not None and _truthy_equal(value, s.default):
                continue
            out.append(f"{prefix}{key}={shown} is not supported by drfleet ({s.where}); ignored")
        elif s.status == DIFFERS and s.said and not _truthy_equal(value, s.default or ""):
            out.append(f"{prefix}{key}={shown}: {s.where}")
        elif s.status == DERIVED:
            out.append(
                f"{prefix}{key} is computed by DRfC and drfleet from other settings; "
                "the value in this file is ignored"
            )
        elif s.status == LEGACY:
            out.append(f"{prefix}{key} is an old name that DRfC no longer reads; {s.where}")
    return out

"""A user's DRfC files, read unchanged: system.env, run.env, worker-N.env, custom_files/.

With DR_EXPERIMENT_NAME set (in system.env), run.env, worker-N.env and custom_files come from
experiments/<name>/, as DRfC does. Each worker-k.env (k >= 2, multi-config) is layered on
run.env alone, never on another worker's file."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drfleet.drfc import envfile, settings
from drfleet.drfc.envfile import EnvFile
from drfleet.errors import ConfigError

CUSTOM = ("hyperparameters.json", "model_metadata.json", "reward_function.py")


@dataclass(frozen=True)
class TrainingConfig:
    env_dir: Path
    base_dir: Path  # env_dir, or env_dir/experiments/<name>
    system: EnvFile
    run: EnvFile
    workers: int
    multi_config: bool
    worker_files: dict[int, EnvFile]  # k -> worker-k.env, k >= 2, multi-config only
    hyperparameters: dict[str, Any]
    model_metadata: dict[str, Any]
    reward_function: str
    custom_dir: Path
    warnings: list[str] = field(default_factory=list)

    @property
    def values(self) -> dict[str, str]:
        """system.env then run.env, as DRfC exports them."""
        return {**self.system.values, **self.run.values}

    def get(self, key: str, default: str = "") -> str:
        return self.values.get(key, default)

    def setting(self, key: str) -> str:
        """The value of a DRfC setting, or DRfC's template default when the files omit it."""
        return self.values.get(key, settings.default(key) or "")

    def where(self, key: str) -> str:
        for f in (self.run, self.system):
            if key in f.values:
                return f.where(key)
        return self.run.path

    @property
    def storage(self) -> str:
        """DR_CLOUD as drfleet acts on it: azure is local to DRfC too (activate.sh)."""
        cloud = self.get("DR_CLOUD", "local").lower()
        return "local" if cloud == "azure" else cloud

    def worker_values(self, slot: int) -> dict[str, str]:
        """What worker `slot` trains with: run.env, and worker-k.env on top for k >= 2."""
        values = self.values
        if slot >= 2 and slot in self.worker_files:
            values = {**values, **self.worker_files[slot].values}
        return values

    @property
    def episodes(self) -> int:
        return int(self.hyperparameters["num_episodes_between_training"])


def load(
    env_dir: str | Path,
    workers: int | None = None,
    environ: Mapping[str, str] | None = None,
    settings_only: bool = False,
) -> TrainingConfig:
    """DR_EXPERIMENT_NAME in the environment wins over system.env's, as DRfC's
    `activate.sh -e NAME` does. settings_only: system.env and run.env alone, for a command
    that needs no more (download-custom-files, download-model --source, on a machine that may
    have nothing else yet): no worker files, no custom_files/."""
    environ = os.environ if environ is None else environ
    root = Path(env_dir).resolve()
    if not (root / "system.env").exists():
        raise ConfigError(
            "file not found",
            where=str(root / "system.env"),
            fix="pass --env-dir with your DRfC files, or run `drfleet init` there "
            "for DRfC's defaults",
        )
    system = envfile.load(root / "system.env")
    experiment = environ.get("DR_EXPERIMENT_NAME") or system.get("DR_EXPERIMENT_NAME")
    if environ.get("DR_EXPERIMENT_NAME"):
        system.values["DR_EXPERIMENT_NAME"] = experiment
    base = root / "experiments" / experiment if experiment else root
    if experiment and (not base.is_dir() or "/" in experiment or experiment in (".", "..")):
        raise ConfigError(
            f"DR_EXPERIMENT_NAME={experiment} but {base} does not exist",
            where="the environment"
            if environ.get("DR_EXPERIMENT_NAME")
            else system.where("DR_EXPERIMENT_NAME"),
            fix=f"create {base} with run.env and custom_files/, or unset it",
        )
    run = envfile.load(base / "run.env", base=system.values)
    values = {**system.values, **run.values}
    # the file whose value counts: run.env's wins, as DRfC exports it after system.env's
    source = run if "DR_WORKERS" in run.values else system
    n = workers if workers else _int(values.get("DR_WORKERS", "1"), "DR_WORKERS", source)
    if n < 1:
        where = source.where("DR_WORKERS")
        raise ConfigError(
            f"DR_WORKERS is {n}; training needs at least 1 worker",
            where=where if not workers else "--workers",
            fix="set DR_WORKERS=1 or more",
        )
    multi = values.get("DR_TRAIN_MULTI_CONFIG", "False") == "True" and n > 1
    warnings = [*system.warnings, *run.warnings]
    located = {k: system.where(k) for k in system.values}
    located.update({k: run.where(k) for k in run.values})
    warnings += settings.warnings(values, located)
    worker_files: dict[int, EnvFile] = {}
    if multi and not settings_only:
        for k in range(2, n + 1):
            path = base / f"worker-{k}.env"
            if not path.exists():
                raise ConfigError(
                    f"DR_TRAIN_MULTI_CONFIG=True with {n} workers needs "
                    f"worker-{k}.env, which is missing",
                    where=str(path),
                    fix=f"create it (copy run.env and change the world), or set DR_WORKERS={k - 1}",
                )
            wf = envfile.load(path, base=values)
            worker_files[k] = wf
            warnings += wf.warnings
            for key in wf.values:
                if key not in WORKER_KEYS:
                    warnings.append(
                        f"{wf.where(key)}: {key} is not a per-worker setting; "
                        "DRfC and drfleet ignore it in worker files"
                    )
    custom_dir = base / "custom_files"
    if settings_only:
        return TrainingConfig(
            root, base, system, run, n, multi, worker_files, {}, {}, "", custom_dir, warnings
        )
    hyper = _json(custom_dir / "hyperparameters.json")
    meta = _json(custom_dir / "model_metadata.json")
    if "num_episodes_between_training" not in hyper:
        raise ConfigError(
            "num_episodes_between_training is missing",
            where=str(custom_dir / "hyperparameters.json"),
            fix='add e.g. "num_episodes_between_training": 20',
        )
    episodes = hyper["num_episodes_between_training"]
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ConfigError(
            f"num_episodes_between_training must be a whole number >= 1, not {episodes!r}",
            where=str(custom_dir / "hyperparameters.json"),
        )
    reward = custom_dir / "reward_function.py"
    if not reward.exists():
        raise ConfigError(
            "file not found",
            where=str(reward),
            fix="write your reward function there (def reward_function(params))",
        )
    return TrainingConfig(
        root,
        base,
        system,
        run,
        n,
        multi,
        worker_files,
        hyper,
        meta,
        reward.read_text(errors="replace"),
        custom_dir,
        warnings,
    )


def _int(value: str, key: str, file: EnvFile) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{key}={value!r} is not a whole number", where=file.where(key)) from None


def _json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            "file not found", where=str(path), fix="run `drfleet init` for DRfC's defaults"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"not valid JSON: {exc.msg} (column {exc.colno})", where=f"{path}:{exc.lineno}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError("must be a JSON object", where=str(path))
    return data


# What a worker-k.env may set (DRfC's multi-config keys).
WORKER_KEYS = frozenset(
    {
        "DR_WORLD_NAME",
        "DR_RACE_TYPE",
        "DR_CAR_COLOR",
        "DR_CAR_BODY_SHELL_TYPE",
        "DR_TRAIN_ALTERNATE_DRIVING_DIRECTION",
        "DR_TRAIN_CHANGE_START_POSITION",
        "DR_TRAIN_ROUND_ROBIN_ADVANCE_DIST",
        "DR_ENABLE_DOMAIN_RANDOMIZATION",
        "DR_TRAIN_START_POSITION_OFFSET",
        "DR_TRAIN_REVERSE_DIRECTION",
        "DR_CAMERA_MAIN_ENABLE",
        "DR_CAMERA_SUB_ENABLE",
        "DR_ENABLE_EXTRA_KVS_OVERLAY",
        "DR_OA_NUMBER_OF_OBSTACLES",
        "DR_OA_MIN_DISTANCE_BETWEEN_OBSTACLES",
        "DR_OA_RANDOMIZE_OBSTACLE_LOCATIONS",
        "DR_OA_IS_OBSTACLE_BOT_CAR",
        "DR_OA_OBSTACLE_TYPE",
        "DR_OA_OBJECT_POSITIONS",
        "DR_H2B_IS_LANE_CHANGE",
        "DR_H2B_LOWER_LANE_CHANGE_TIME",
        "DR_H2B_UPPER_LANE_CHANGE_TIME",
        "DR_H2B_LANE_CHANGE_DISTANCE",
        "DR_H2B_NUMBER_OF_BOT_CARS",
        "DR_H2B_MIN_DISTANCE_BETWEEN_BOT_CARS",
        "DR_H2B_RANDOMIZE_BOT_CAR_LOCATIONS",
        "DR_H2B_BOT_CAR_SPEED",
        "DR_H2B_BOT_CAR_PENALTY",
    }
)

"""The SageMaker container rl_coach starts on the trainer (sagemaker's local mode), which no
agent owns: found as DRfC's stop.sh finds it, and removed with its job folder."""

from __future__ import annotations

import json
from typing import Any

from drfleet.hosts.remote import Session
from drfleet.names import SAGEMAKER_PATTERN
from drfleet.shell import cmd


def remove_sagemaker(s: Session, run_id: str | None) -> None:
    """The SageMaker container rl_coach started for run_id (None: for any run), removed with
    its job folder."""
    ours = sagemaker_of(s, run_id)
    if not ours:
        return
    s.run(
        cmd("docker", "rm", "-f", *(str(d["Id"]) for d in ours)),
        become=True,
        timeout=120,
        task="remove the sagemaker container",
    )
    jobs = sorted({j for d in ours if (j := job_dir(d))})
    if jobs:  # its docker-compose.yaml holds the run's keys (local mode writes them there)
        s.run(cmd("rm", "-rf", "--", *jobs), become=True, timeout=60, task="remove its job")


def sagemaker_of(s: Session, run_id: str | None) -> list[dict[str, Any]]:
    """The SageMaker containers rl_coach started for run_id (None: for any run), inspected,
    as DRfC's stop.sh finds them: named `<10 chars>-algo-<i>-<5 chars>` by SageMaker's local
    mode (sagemaker 2.x local/image.py) and carrying the run in RUN_ID, which start.py hands
    it (DRfC greps the compose file holding that environment for RUN_ID=<id>)."""
    found = s.run(
        cmd("docker", "ps", "-aq", "--no-trunc", "--filter", f"name={SAGEMAKER_PATTERN}"),
        become=True,
        timeout=60,
        task="find the sagemaker container",
    ).stdout.split()
    if not found:
        return []
    inspected = s.run(
        cmd("docker", "inspect", *found),
        become=True,
        check=False,
        timeout=60,
        task="which run's sagemaker container",
        prints_secret=True,  # its environment holds the run's keys
    )
    try:
        docs = json.loads(inspected.stdout or "[]")
    except ValueError:
        docs = []
    return [
        d
        for d in docs
        if run_id is None or f"RUN_ID={run_id}" in ((d.get("Config") or {}).get("Env") or [])
    ]


SAGEMAKER_ROOT = "/tmp/sagemaker/"  # local mode's container_root (the simapp's config.yaml)


def job_dir(inspected: dict[str, Any]) -> str:
    """The local-mode job folder of an inspected sagemaker container, "" when it has none:
    <container_root>/<tmp>/, whose <host>/input is its /opt/ml/input (pure)."""
    for m in inspected.get("Mounts") or []:
        source = str(m.get("Source") or "")
        if m.get("Destination") != "/opt/ml/input" or not source.startswith(SAGEMAKER_ROOT):
            continue
        parts = source[len(SAGEMAKER_ROOT) :].split("/")
        if (
            len(parts) == 3
            and parts[2] == "input"
            and all(p and p not in (".", "..") for p in parts)
        ):
            return SAGEMAKER_ROOT + parts[0]
    return ""

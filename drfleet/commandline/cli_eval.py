"""evaluate: DRfC's dr-start-evaluation and dr-stop-evaluation, and the results the simapp
writes, as a table or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drfleet.commandline.command import command, inventory_and_options, show
from drfleet.hosts.remote import DEFAULT_LIMIT
from drfleet.ui import Board


@command(
    host="the host to evaluate on (default: the one with the most room beside the run)",
    wait="wait for every trial, then print the results",
    clone="copy the model to <prefix>-E first and evaluate that copy (DRfC's -c)",
    results="print the newest evaluation's results (or --metrics KEY's) and start nothing",
    metrics="with --results: the metrics object's S3 key",
    stop="remove the evaluation container (training goes on)",
    timeout="with --wait: seconds to wait for the trials (default 3600)",
    dry_run="touch nothing; with --out write the eval params and the host's desired state",
    out="where --dry-run writes (DIR/<S3 key>, DIR/hosts/<host>/desired.json)",
)
def evaluate(
    c: Any,
    host: str | None = None,
    wait: bool = False,
    clone: bool = False,
    results: bool = False,
    metrics: str | None = None,
    stop: bool = False,
    timeout: float = 3600,
    dry_run: bool = False,
    out: str | None = None,
    inventory: str | None = None,
    env_dir: str | None = None,
    json: bool = False,
    accept_new_host_keys: bool = False,
    known_hosts: str | None = None,
    forks: int = DEFAULT_LIMIT,
    verbose: int = 0,
) -> None:
    """Evaluate the model (DR_LOCAL_S3_MODEL_PREFIX, DR_EVAL_* of run.env) on a host with
    room while training goes on: the eval params as DRfC's prepare-config.py writes them,
    the container as its docker-compose-eval.yml runs it; its video is on the viewer page."""
    from drfleet.errors import DrfleetError
    from drfleet.runs import evaluation
    from drfleet.runs.results import EvalStopped

    inv, options = inventory_and_options(
        inventory, known_hosts, accept_new_host_keys, forks, env_dir=env_dir, quiet=json
    )
    env = Path(env_dir or ".")
    if dry_run != (out is not None):
        raise DrfleetError("--dry-run and --out go together: --dry-run --out DIR")
    done: Any
    if stop:
        done = EvalStopped(evaluation.stop(inv, env, options))
    else:
        with Board(["evaluation"], title="evaluate", quiet=json) as board:
            tick = lambda line: board.progress("evaluation", line)  # noqa: E731
            if results:
                done = evaluation.results(inv, env, options, metrics, 0, 0, tick)
            else:
                done = evaluation.start(
                    inv, env, options, host, Path(out) if out else None, tick, clone
                )
                if wait and not dry_run:
                    done.results = evaluation.results(
                        inv, env, options, done.metrics, done.trials, timeout, tick, done.host
                    )
    show(done, json)


TASKS = (evaluate,)

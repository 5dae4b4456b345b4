"""evaluate: DRfC's dr-start-evaluation and dr-stop-evaluation, and the results the simapp
writes, as a table or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drfleet.commandline.command import command, inventory_and_options, print_json
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

    inv, options = inventory_and_options(
        inventory, known_hosts, accept_new_host_keys, forks, env_dir=env_dir, quiet=json
    )
    env = Path(env_dir or ".")
    if dry_run != (out is not None):
        raise DrfleetError("--dry-run and --out go together: --dry-run --out DIR")
    if stop:
        gone = evaluation.stop(inv, env, options)
        print_json({"stopped": gone}) if json else print(
            f"evaluation removed from {', '.join(gone)}" if gone else "no evaluation runs"
        )
        return
    with Board(["evaluation"], title="evaluate", quiet=json) as board:
        tick = lambda line: board.progress("evaluation", line)  # noqa: E731
        if results:
            done = evaluation.results(inv, env, options, metrics, 0, 0, tick)
        else:
            started = evaluation.start(
                inv, env, options, host, Path(out) if out else None, tick, clone
            )
            done = started
            if wait and not dry_run:
                done = {
                    **started,
                    **evaluation.results(
                        inv,
                        env,
                        options,
                        started["metrics"],
                        started["trials"],
                        timeout,
                        tick,
                        started["host"],
                    ),
                }
    if json:
        print_json(done)
        return
    for w in done.get("warnings", []):
        print(f"warning: {w}")
    if "host" in done and "rows" not in done:
        print(
            f"evaluating on {done['host']}: params s3://.../{done['params']}, results in "
            f"{done['metrics']} (`drfleet evaluate --results`)"
            if "dry_run" not in done
            else f"dry run: eval params and {done['host']}'s desired state in {done['dry_run']}"
        )
        return
    _table(done)


def _table(done: dict[str, Any]) -> None:
    print(f"{done['metrics']}")
    print(
        f"{'trial':>5}  {'status':<16} {'progress':>8} {'lap time':>9} {'off track':>9} "
        f"{'crashes':>7} {'resets':>6}"
    )
    for r in done["rows"]:
        print(
            f"{r['trial']:>5}  {r['status']:<16} {r['progress']:>7.1f}% {r['lap_time']:>8.3f}s "
            f"{r['off_track']:>9} {r['crashes']:>7} {r['resets']:>6}"
        )
    s = done["summary"]
    best = f"{s['best_lap_time']:.3f}s" if s["best_lap_time"] is not None else "-"
    print(
        f"{s['laps_completed']} of {s['trials']} laps completed, best {best}, "
        f"mean progress {s['mean_progress']}%"
    )


TASKS = (evaluate,)

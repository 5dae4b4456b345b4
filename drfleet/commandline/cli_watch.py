"""Watching a run's simulations: robomaker-stats (DRfC's dr-get-robomaker-stats, Gazebo's
figures per worker) and metrics (dr-start-metrics / dr-stop-metrics: Telegraf, InfluxDB and
Grafana fed by every worker)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from invoke.exceptions import Exit

from drfleet.commandline.command import (
    command,
    inventory_and_options,
    print_json,
    print_json_line,
)
from drfleet.errors import DrfleetError


@command(
    worker="only this worker slot (DRfC's -n); default: every worker of the run",
    duration="seconds to read each worker's statistics, all workers at once (default 3)",
)
def robomaker_stats(
    c: Any,
    worker: int = 0,
    duration: float = 3.0,
    json: bool = False,
    inventory: str | None = None,
    env_dir: str | None = None,
    accept_new_host_keys: bool = False,
    known_hosts: str | None = None,
    verbose: int = 0,
) -> None:
    """Gazebo's real-time factor and simulated time of each worker of the run started from
    --env-dir (DRfC's dr-get-robomaker-stats), read for --duration seconds."""
    from drfleet.runs import simstats, simwatch

    if not 0 < duration <= 600:
        raise DrfleetError(f"--duration {duration:g}: give seconds, more than 0 and at most 600")
    inv, options = inventory_and_options(
        inventory, known_hosts, accept_new_host_keys, env_dir=env_dir, quiet=json
    )
    found, missing = simwatch.targets(inv, options, Path(env_dir or "."), worker)
    got = sorted(simwatch.read(found, options, duration) + missing, key=lambda g: g.slot)
    if json:
        print_json({"seconds": duration, "workers": [g.as_json() for g in got]})
    else:
        for g in got:
            print(simstats.line(g))
    if any(g.factor is None for g in got):
        raise Exit(code=1)


@command(
    stop="end the stack (InfluxDB's data stays on the host for the next start)",
    port="local port for Grafana (default: any free one)",
    detach="start the stack and return, without forwarding Grafana here",
)
def metrics(
    c: Any,
    stop: bool = False,
    port: int = 0,
    detach: bool = False,
    json: bool = False,
    inventory: str | None = None,
    env_dir: str | None = None,
    accept_new_host_keys: bool = False,
    known_hosts: str | None = None,
    verbose: int = 0,
) -> None:
    """The metrics stack (DRfC's dr-start-metrics / dr-stop-metrics): Telegraf, InfluxDB and
    Grafana with a training dashboard on the trainer's host, fed by every worker
    (DR_TELEGRAF_HOST=telegraf); Grafana forwarded to 127.0.0.1 here through SSH until
    Ctrl-C."""
    from drfleet.hosts import tunnel
    from drfleet.hosts.remote import session
    from drfleet.runs import metrics as stack

    inv, options = inventory_and_options(
        inventory, known_hosts, accept_new_host_keys, env_dir=env_dir, quiet=json
    )
    host, creds = stack.start(inv, options, Path(env_dir or "."), stop)
    doc: dict[str, Any] = {"host": host.name, "running": not stop}
    if stop or detach:
        if json:
            print_json({**doc, "credentials": None if stop else str(creds)})
        else:
            print(f"metrics stack on {host.name}: {'ended' if stop else 'running'}")
        return
    with (
        session(host, options) as s,
        tunnel.forward(s, "127.0.0.1", stack.GRAFANA_PORT, port) as local,
    ):
        url = f"http://127.0.0.1:{local}"
        if json:  # one line, printed while the forward stays open
            print_json_line({**doc, "url": url, "port": local, "credentials": str(creds)})
        else:
            print(
                f"Grafana of {host.name} at {url} (dashboard {url}/d/{stack.DASHBOARD}); user "
                f"admin, its password in {creds}; Ctrl-C to close"
            )
        sys.stdout.flush()
        while True:
            time.sleep(3600)


TASKS = (robomaker_stats, metrics)

"""The command line: one Invoke namespace behind both `invoke <task>` (tasks.py in the repo)
and the `drfleet` console script of an installed package."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke.collection import Collection
from invoke.exceptions import Exit
from rich.table import Table
from rich.text import Text

from drfleet import __version__
from drfleet.commandline import (
    cli_analysis,
    cli_cloud,
    cli_droa,
    cli_eval,
    cli_models,
    cli_watch,
    program,
    status_view,
)
from drfleet.commandline.command import (
    WORKERS_NOT_GIVEN,
    command,
    inventory_and_options,
    print_json,
    print_json_line,
    shipped_playbook,
    show,
    workers_given,
)
from drfleet.errors import DrfleetError
from drfleet.hosts import facts as facts_mod
from drfleet.hosts.remote import DEFAULT_LIMIT

if TYPE_CHECKING:
    from drfleet.runs.observe import FleetReport
from drfleet.ui import Board, console


@command()
def facts(
    c: Any,
    host: list[str] | None = None,
    group: list[str] | None = None,
    inventory: str | None = None,
    json: bool = False,
    accept_new_host_keys: bool = False,
    known_hosts: str | None = None,
    limit: list[str] | None = None,
    forks: int = DEFAULT_LIMIT,
    verbose: int = 0,
) -> None:
    """What drfleet knows of each host: OS, vCPUs, memory, disk, GPUs, docker, swarm."""
    inv, options = inventory_and_options(
        inventory, known_hosts, accept_new_host_keys, forks, quiet=json
    )
    hosts = inv.select([*(limit or []), *(host or [])], group or [])
    with Board([h.name for h in hosts], title="facts", quiet=json) as board:
        outcomes = facts_mod.gather_all(hosts, options, board)
    doc = facts_mod.report(outcomes)
    if json:
        print_json(doc)
    else:
        _facts_table(doc)
    failed = [o for o in outcomes if not o.ok]
    if failed:
        if not json:
            for o in failed:
                sys.stderr.write(f"drfleet: {o.error.message if o.error else ''}\n")
        raise Exit(code=1)


def _facts_table(doc: dict[str, Any]) -> None:
    from drfleet.hosts.hostfacts import Facts

    table = Table(
        "host", "address", "os", "vCPUs", "memory", "disk free", "GPUs", "docker", "swarm"
    )
    for name, entry in doc["hosts"].items():
        if "vcpus" not in entry:
            state = "unreachable" if not entry.get("reachable") else "failed"
            table.add_row(
                Text(name), Text(entry["address"]), f"[red]{state}[/]", "", "", "", "", "", ""
            )
            continue
        f = Facts(entry)
        d = f.docker
        # what a host reports is Text, never markup
        docker = (
            Text(f"{d.version}")
            if d.running
            else "[yellow]stopped[/]"
            if d.installed
            else "[dim]not installed[/]"
        )
        gpus = ", ".join(f"{g.name} ({g.memory_mb} MB)" for g in f.gpus) or "-"
        table.add_row(
            Text(name),
            Text(entry["address"]),
            Text(f"{f.os.id} {f.os.version}"),
            str(f.vcpus),
            f"{f.memory_mb // 1024} GiB",
            f"{f.disk_free_mb // 1024} GiB",
            Text(gpus),
            docker,
            Text(str(d.swarm.state)),
        )
    console().print(table)


@command(
    playbook="playbook file to run (default: playbooks/provision.yml)",
    check="change nothing; say what each task would do, with diffs",
    diff="show what each task changed, with file diffs (check mode always does)",
    images_from="where hosts get the simulation images: pull (a registry, the default), controller "
    "(this machine's docker: one copy, relayed host to host, only the layers they lack), "
    "controller-direct (a whole copy to each host) or peer (from a host that has them)",
)
def provision(
    c: Any,
    host: list[str] | None = None,
    group: list[str] | None = None,
    playbook: str | None = None,
    check: bool = False,
    diff: bool = False,
    images_from: str = "pull",
    inventory: str | None = None,
    env_dir: str | None = None,
    json: bool = False,
    accept_new_host_keys: bool = False,
    known_hosts: str | None = None,
    limit: list[str] | None = None,
    forks: int = DEFAULT_LIMIT,
    verbose: int = 0,
) -> None:
    """Prepare hosts for training: docker, GPU/OpenGL support, images, swarm, the agent."""
    from drfleet.playbook import loader, recap
    from drfleet.playbook.runner import Runner, RunOptions, report_json

    if images_from not in ("pull", "controller", "controller-direct", "peer"):
        raise DrfleetError(
            f"--images-from {images_from}: use pull, controller, controller-direct or peer"
        )
    book = loader.load(playbook or shipped_playbook("provision.yml"))
    inv, remote = inventory_and_options(
        inventory, known_hosts, accept_new_host_keys, forks, env_dir=env_dir, quiet=json
    )
    hosts = inv.select([*(limit or []), *(host or [])], group or [])
    options = RunOptions(
        check=check,
        remote=remote,
        extra_vars=drfc_vars(env_dir),
        images_from=images_from,
    )
    with Board([h.name for h in hosts], title="provision", quiet=json) as board:
        reports = Runner(book, inv, hosts, options, board).run()
    if json:
        print_json(report_json(reports, check, diff))
    else:
        recap.show(reports, check, diff)
    if any(r.failed for r in reports.values()):
        raise Exit(code=1)


def drfc_vars(env_dir: str | None) -> dict[str, Any]:
    """What the provision playbook needs from the user's DRfC files: the images."""
    from drfleet.drfc import envfile, images
    from drfleet.runs import metrics

    path = Path(env_dir or ".") / "system.env"
    if not path.exists():
        return {"drfc_images": {}, "drfc_system_env": None}
    system = envfile.load(path)
    found: dict[str, Any] = dict(images.simapp_images(system))
    minio = images.minio_image(system)
    if minio:
        found["minio"] = minio
    if metrics.wanted(system):  # the trainer runs the metrics stack (drfleet metrics)
        found["metrics"] = list(metrics.IMAGES.values())
    return {"drfc_images": found, "drfc_system_env": str(path)}


@command(
    suggest="say how many workers this inventory supports, and stop there",
    workers="number of robomaker workers (default: DR_WORKERS)",
)
def plan(
    c: Any,
    inventory: str | None = None,
    env_dir: str | None = None,
    json: bool = False,
    suggest: bool = False,
    workers: int = WORKERS_NOT_GIVEN,
    accept_new_host_keys: bool = False,
    known_hosts: str | None = None,
    verbose: int = 0,
) -> None:
    """Check the training configuration and show where every worker would run, and why."""
    from drfleet.runs import capacity, placement, training

    workers = workers_given(workers)
    inv, options = inventory_and_options(
        inventory, known_hosts, accept_new_host_keys, env_dir=env_dir, quiet=json
    )
    if suggest:
        caps = capacity.of_hosts(inv, options)
        n = placement.suggest(list(caps.values()))
        slots = {h: c.slots for h, c in caps.items()}
        doc = {"workers": n, "hosts": slots}
        if json:
            print_json(doc)
        else:
            per = ", ".join(f"{h}: {k}" for h, k in slots.items())
            print(f"this inventory supports {n} workers ({per})")
        return
    prepared = training.prepare(env_dir or ".", capacity.of_hosts(inv, options), workers)
    if json:
        print_json({"plan": prepared.plan.as_json()})  # as train and its --dry-run say it
    else:
        _plan_table(prepared.plan)


def _plan_table(p: Any) -> None:
    out = console()
    table = Table(
        "slot",
        "host",
        "world",
        "episodes / iteration",
        "params file",
        "video port",
        title=f"trainer: {p.trainer}",
    )
    for w in p.workers:
        table.add_row(
            str(w.slot),
            Text(w.host),
            Text(w.world),
            str(w.episodes),
            Text(w.config_file),
            str(w.video_port),
        )
    out.print(table)
    for note in p.notes:
        out.print(f"note: {note}", style="dim", markup=False)
    for warning in p.warnings:
        out.print(f"warning: {warning}", style="yellow", markup=False)


@command(
    workers="number of robomaker workers (default: DR_WORKERS from system.env)",
    wipe="delete what the model prefix already holds in S3 before training",
    dry_run="touch nothing; write what would be uploaded and sent to --out",
    out="directory for --dry-run",
    rebalance="move the workers of unreachable hosts to hosts with room (slots, worlds and "
    "params kept) and converge every reachable host to the run's plan",
    replace="take the place of another env dir's run on the hosts (without it, train refuses "
    "and names that run)",
)
def train(
    c: Any,
    workers: int = WORKERS_NOT_GIVEN,
    wipe: bool = False,
    replace: bool = False,
    dry_run: bool = False,
    rebalance: bool = False,
    out: str | None = None,
    inventory: str | None = None,
    env_dir: str | None = None,
    json: bool = False,
    accept_new_host_keys: bool = False,
    known_hosts: str | None = None,
    forks: int = DEFAULT_LIMIT,
    verbose: int = 0,
) -> None:
    """Upload the training config and start the trainer and every worker on its host."""
    workers = workers_given(workers)
    from drfleet.runs import capacity, training

    if rebalance:
        if dry_run or wipe or workers:
            raise DrfleetError(
                "--rebalance keeps the running plan: drop --dry-run, --wipe, --workers"
            )
        _rebalance(Path(env_dir or "."), inventory, known_hosts, accept_new_host_keys, json, forks)
        return
    if not dry_run:
        from drfleet.runs import launch

        inv, options = inventory_and_options(
            inventory, known_hosts, accept_new_host_keys, forks, env_dir=env_dir, quiet=json
        )
        names = [h.name for h in inv.hosts.values() if h.roles]
        with Board(names, title="train", quiet=json) as board:
            result = launch.train(inv, Path(env_dir or "."), options, workers, wipe, board, replace)
        show(result, json)
        return
    if not out:
        raise DrfleetError("--dry-run needs --out DIR", fix="e.g. --dry-run --out /tmp/plan")
    inv, options = inventory_and_options(
        inventory, known_hosts, accept_new_host_keys, forks, env_dir=env_dir, quiet=json
    )
    from drfleet.runs import runstate

    prepared = training.prepare(env_dir or ".", capacity.of_hosts(inv, options), workers)
    ident = runstate.identity(Path(env_dir or "."), make=False)
    labels = training.owner_labels(ident, Path(env_dir or "."), prepared.cfg)
    written = training.dry_run(prepared, Path(out), labels)
    if json:
        print_json({"plan": prepared.plan.as_json(), "written": [str(w) for w in written]})
    else:
        _plan_table(prepared.plan)
        print(f"wrote {len(written)} files under {out} (credentials shown as placeholders)")


def _rebalance(
    env_dir: Path,
    inventory: str | None,
    known_hosts: str | None,
    accept: bool,
    json: bool,
    forks: int,
) -> None:
    from drfleet.runs import launch

    inv, options = inventory_and_options(
        inventory, known_hosts, accept, forks, env_dir=env_dir, quiet=json
    )
    names = [h.name for h in inv.hosts.values() if h.roles]
    with Board(names, title="rebalance", quiet=json) as board:
        result = launch.rebalance(inv, env_dir, options, board)
    show(result, json)


@command(
    watch="keep refreshing every 2 s until interrupted",
    converge="also tell a host whose slots moved while it was away to drop them now, and move "
    "the slots of a host with an EC2 spot interruption notice to hosts with room (as train "
    "--rebalance does); without it status only reads",
)
def status(
    c: Any,
    inventory: str | None = None,
    env_dir: str | None = None,
    json: bool = False,
    watch: bool = False,
    converge: bool = False,
    accept_new_host_keys: bool = False,
    known_hosts: str | None = None,
    limit: list[str] | None = None,
    forks: int = DEFAULT_LIMIT,
    verbose: int = 0,
) -> None:
    """Every host, agent and container: state, restarts, uptime, last error, EC2's spot
    interruption notices; with the run started from --env-dir, each slot, the slots lost with
    an unreachable host or leaving with an interrupted one, and hosts still to be told that
    their slots moved (--converge tells them, and moves the leaving slots)."""
    import time as _time

    from drfleet.runs import launch

    inv, options = inventory_and_options(
        inventory, known_hosts, accept_new_host_keys, forks, env_dir=env_dir, quiet=json
    )
    only = {h.name for h in inv.select(limit or [], [])} if limit else None

    def look() -> FleetReport:
        return launch.status(
            inv, options, Path(env_dir or "."), tell=converge, only=only, drain=converge
        )

    if watch and not json and console().is_terminal:  # one display, drawn at once, redrawn
        from rich.live import Live

        asking = status_view.asking(
            [h.name for h in inv.hosts.values() if h.roles and (only is None or h.name in only)]
        )
        with Live(asking, console=console(), auto_refresh=False) as live:
            live.refresh()
            while True:
                live.update(status_view.view(look()), refresh=True)
                _time.sleep(2)
    report = look()
    while True:
        if json and watch:
            print_json_line(report.to_json())  # one document per line
        elif json:
            print_json(report.to_json())
        else:
            console().print(status_view.view(report))
        if not watch:
            break
        _time.sleep(2)
        report = look()
    if not report.healthy:
        raise Exit(code=1)


@command(
    worker="worker slot number (1-based)",
    trainer="the rl_coach / sagemaker logs",
    evaluation="the evaluation's logs (drfleet evaluate)",
    follow="keep printing new lines",
    tail="how many lines from the end (default 200)",
)
def logs(
    c: Any,
    worker: int = 0,
    trainer: bool = False,
    evaluation: bool = False,
    follow: bool = False,
    tail: int = 200,
    inventory: str | None = None,
    env_dir: str | None = None,
    json: bool = False,
    accept_new_host_keys: bool = False,
    known_hosts: str | None = None,
    verbose: int = 0,
) -> None:
    """Logs of one container of the run started from --env-dir (its DR_RUN_ID), from
    whichever host runs it."""
    from drfleet.hosts import agent_client
    from drfleet.hosts.remote import session
    from drfleet.runs import launch, training

    if [bool(worker), trainer, evaluation].count(True) != 1:
        raise DrfleetError("say which logs: --worker N, --trainer or --evaluation")
    run = training.run_of(Path(env_dir or "."))
    name = run.rlcoach if trainer else run.evaluation if evaluation else run.robomaker(worker)
    inv, options = inventory_and_options(
        inventory, known_hosts, accept_new_host_keys, env_dir=env_dir, quiet=json
    )
    host, _ = launch.locate(inv, options, name)
    with session(host, options) as s:
        if json:  # JSON Lines: host, container, stream, time, line
            for item in agent_client.log_lines(s, name, tail, follow):
                print_json_line(item)
            return
        for chunk in agent_client.logs(s, name, tail, follow):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()


@command(
    all="every run's containers on every host (and minio), not only this env dir's run",
    check="change nothing; say what stop would end on each host",
)
def stop(
    c: Any,
    inventory: str | None = None,
    env_dir: str | None = None,
    all: bool = False,
    check: bool = False,
    json: bool = False,
    accept_new_host_keys: bool = False,
    known_hosts: str | None = None,
    forks: int = DEFAULT_LIMIT,
    verbose: int = 0,
) -> None:
    """Stop the run started from --env-dir everywhere (its workers, rl_coach, the sagemaker
    container, its evaluation; minio when no other run uses it); keep the data. Other runs
    (another DR_RUN_ID) go on."""
    from drfleet.runs import launch

    inv, options = inventory_and_options(
        inventory, known_hosts, accept_new_host_keys, forks, env_dir=env_dir, quiet=json
    )
    show(launch.stop(inv, options, Path(env_dir or "."), everything=all, check=check), json)


@command(
    port="local port of the page (default: DR_WEBVIEWER_PORT of system.env, else 8100)",
    bind="local address to listen on (default 127.0.0.1)",
    static="write a standalone page to this file instead of serving, for browsers that reach "
    "the hosts directly (needs publish_address set on the worker hosts)",
)
def viewer(
    c: Any,
    port: int = 0,
    bind: str = "127.0.0.1",
    static: str | None = None,
    inventory: str | None = None,
    env_dir: str | None = None,
    json: bool = False,
    accept_new_host_keys: bool = False,
    known_hosts: str | None = None,
    verbose: int = 0,
) -> None:
    """Serve one page with every worker's live video stream, proxied over SSH, and a plot of
    the run's reward and progress per iteration (the run started from --env-dir)."""
    from drfleet import viewer as viewer_mod
    from drfleet.runs import launch, training

    inv, options = inventory_and_options(
        inventory, known_hosts, accept_new_host_keys, env_dir=env_dir, quiet=json
    )
    run = training.run_of(Path(env_dir or "."))
    port = port or training.webviewer_port(Path(env_dir or "."))
    if static:
        report = launch.status(inv, options)
        workers = viewer_mod.direct(viewer_mod.workers_from(report, inv, run))
        viewer_mod.write_static(Path(static), workers)
        if json:
            print_json({"page": static, "workers": workers})
        else:
            print(f"wrote {static}: {sum(1 for w in workers if w['port'])} streams")
        return

    def ready(url: str, workers: list[dict[str, Any]]) -> None:
        if json:  # one line, printed while the page is served
            print_json_line({"url": url, "workers": workers})
        else:
            print(f"viewer on {url} ({len(workers)} workers; Ctrl-C to stop)", flush=True)

    def progress() -> dict[str, Any]:
        return launch.progress_series(inv, options, Path(env_dir or "."))

    viewer_mod.serve(inv, options, bind, port, ready, progress, run)


@command(
    worker="worker slot number (1-based)",
    port="local port to listen on (default: any free one)",
)
def vnc(
    c: Any,
    worker: int = 0,
    port: int = 0,
    json: bool = False,
    inventory: str | None = None,
    env_dir: str | None = None,
    accept_new_host_keys: bool = False,
    known_hosts: str | None = None,
    verbose: int = 0,
) -> None:
    """Reach one worker's VNC desktop (DR_GUI_ENABLE=True) of the run started from --env-dir
    through SSH, on 127.0.0.1 here, until Ctrl-C."""
    import time

    from drfleet.hosts import tunnel
    from drfleet.hosts.remote import session
    from drfleet.runs import launch, training

    if worker < 1:
        raise DrfleetError("say which worker: --worker N (1-based)")
    inv, options = inventory_and_options(
        inventory, known_hosts, accept_new_host_keys, env_dir=env_dir, quiet=json
    )
    run = training.run_of(Path(env_dir or "."))
    host, container = launch.locate(inv, options, run.robomaker(worker))
    remote = container.ports.get("5900/tcp")
    if not remote:
        raise DrfleetError(
            f"worker {worker} on {host.name} has no VNC: it is published only with "
            "DR_GUI_ENABLE=True",
            fix="set DR_GUI_ENABLE=True in system.env and run `drfleet train` again",
        )
    address = container.reach("5900/tcp")
    with session(host, options) as s, tunnel.forward(s, address, remote, port) as local:
        if json:  # one line, printed while the forward stays open
            doc = {"worker": worker, "host": host.name, "address": "127.0.0.1", "port": local}
            print_json_line(doc)
        else:
            print(
                f"worker {worker} ({host.name}): VNC at 127.0.0.1:{local}; "
                "open it in a VNC viewer, Ctrl-C to close"
            )
        sys.stdout.flush()
        while True:
            time.sleep(3600)


@command()
def init(c: Any, env_dir: str | None = None, json: bool = False, verbose: int = 0) -> None:
    """Write DRfC-compatible system.env, run.env, custom_files/ and inventory/local.yml
    where they are missing (never overwriting)."""
    from drfleet.runs import training

    created, kept = training.init(Path(env_dir or "."))
    if json:
        print_json({"created": [str(f) for f in created], "kept": [str(f) for f in kept]})
        return
    for f in created:
        print(f"created {f}")
    for f in kept:
        print(f"kept    {f} (exists)")


@command(
    stop="end the container (the notebooks' folder stays on the host)",
    port="local port for Jupyter (default: any free one)",
    detach="start it (or find it running) and return, without forwarding Jupyter here",
    logs="follow the container's log (dr-logs-loganalysis) and start nothing",
    collect="only bring every worker host's logs to the trainer's host (done on each start)",
    images_from="where the image comes from when the host lacks it, as provision's: "
    "pull (default), controller, controller-direct or peer",
)
def log_analysis(
    c: Any,
    stop: bool = False,
    port: int = 0,
    detach: bool = False,
    logs: bool = False,
    collect: bool = False,
    images_from: str = "pull",
    json: bool = False,
    inventory: str | None = None,
    env_dir: str | None = None,
    accept_new_host_keys: bool = False,
    known_hosts: str | None = None,
    verbose: int = 0,
) -> None:
    """Log analysis (DRfC's dr-start-loganalysis): the deepracer-analysis Jupyter image
    (DR_ANALYSIS_IMAGE) on the trainer's host, with the run's S3 as DR_LOCAL_S3_PROFILE and
    every worker's logs under logs/robomaker; Jupyter forwarded to 127.0.0.1 here through SSH
    until Ctrl-C, its URL with the token printed (dr-url-loganalysis)."""
    cli_analysis.run(
        provision_image, stop, port, detach, logs, collect, images_from, json, inventory,
        env_dir, accept_new_host_keys, known_hosts,
    )  # fmt: skip


def provision_image(
    inv: Any, trainer: Any, image: str, images_from: str, remote: Any, quiet: bool
) -> None:
    """An image on one host by provision's own image task (playbooks/log-analysis.yml: pulled
    there, or copied as --images-from says); nothing happens when the host has it."""
    from drfleet.playbook import loader, recap
    from drfleet.playbook.runner import Runner, RunOptions

    book = loader.load(shipped_playbook(cli_analysis.PLAYBOOK))
    options = RunOptions(
        remote=remote, extra_vars={"analysis_image": image}, images_from=images_from
    )
    with Board([trainer.name], title="log-analysis image", quiet=quiet) as board:
        reports = Runner(book, inv, [trainer], options, board).run()
    if any(r.failed for r in reports.values()):
        if not quiet:
            recap.show(reports, False, False)
        raise DrfleetError(
            f"{trainer.name} lacks {image} and it could not be put there; nothing was started",
            fix="see the task above; without a registry, `--images-from controller` copies it "
            "from this machine's docker",
        )


ns = Collection(
    facts,
    provision,
    plan,
    train,
    status,
    logs,
    stop,
    viewer,
    vnc,
    init,
    *cli_models.TASKS,
    *cli_eval.TASKS,
    *cli_droa.TASKS,
    *cli_cloud.TASKS,
    *cli_watch.TASKS,
    log_analysis,
)
ns.configure({"run": {"echo_stdin": False}})


def main() -> None:
    program.run(ns, __version__)

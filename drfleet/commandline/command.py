"""How drfleet's commands take their flags, and what every command shares.

Long flags come from the parameters. Short ones come only from SHORT, so a letter means the
same in every command, as in Ansible (-i inventory, -l hosts, -f forks, -C check, -D diff,
-v verbose, -j json), `-h` is help everywhere, and no destructive flag (--wipe, say) has one.
"""

from __future__ import annotations

import functools
import inspect
import json as _json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from invoke.exceptions import Exit
from invoke.tasks import Task, task

from drfleet.errors import DrfleetError, host_fields
from drfleet.hosts import inventory as inventory_mod
from drfleet.hosts.remote import DEFAULT_LIMIT, Options, Unreachable

EXIT_FAILED = 1  # a host failed, or could not be reached
EXIT_USAGE = 2  # bad input: a flag, a value, a file

F = TypeVar("F", bound=Callable[..., Any])

SHORT = {
    "inventory": "i",
    "limit": "l",
    "forks": "f",
    "check": "C",
    "diff": "D",
    "verbose": "v",
    "json": "j",
    "output": "o",
    "yes": "y",
}

COMMON_HELP = {
    "inventory": "inventory file, YAML or INI (default: $DRFLEET_INVENTORY, else "
    "inventory/local.yml, else this machine alone)",
    "env_dir": "directory with the DRfC files system.env, run.env, worker-N.env, custom_files/ "
    "(default: the current directory)",
    "json": "print JSON on stdout for scripts, and nothing else",
    "limit": "hosts to act on: names, groups (also `trainer`, `robomaker`) or patterns like "
    "'w*', separated by commas or repeated (default: all)",
    "host": "a host of the inventory; repeat it or separate names with commas (as --limit)",
    "group": "a group of the inventory (also `trainer` and `robomaker`); may be repeated",
    "accept_new_host_keys": "trust and record the SSH key of hosts not yet in known_hosts "
    "(trust on first use); a changed key is still refused",
    "known_hosts": "known_hosts file to verify host keys against (default: the inventory's "
    "known_hosts, else ~/.ssh/known_hosts)",
    "forks": f"at most this many hosts at once (default {DEFAULT_LIMIT})",
    "verbose": "drfleet's debug log on stderr; -vvv also that of the SSH and S3 libraries "
    "(which may show key ids)",
}


class CommandTask(Task):  # type: ignore[type-arg]
    """A task whose short flags are SHORT's, and nothing else."""

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        opts: dict[str, Any] = super().arg_opts(name, default, taken_names)
        if name in SHORT:
            opts["names"].append(SHORT[name])
        return opts


def command(**extra: str) -> Callable[[F], F]:
    """@command(flag="its help"): a task whose shared flags (those in COMMON_HELP) get their
    common help, the others extra's; list parameters may be repeated; errors become one
    message (friendly); -v is counted."""

    def wrap(fn: F) -> F:
        params = inspect.signature(fn).parameters
        return task(  # type: ignore[no-any-return]
            klass=CommandTask,
            auto_shortflags=False,
            help={**{n: h for n, h in COMMON_HELP.items() if n in params}, **extra},
            iterable=[n for n, p in params.items() if "list[" in str(p.annotation)],
            incrementable=["verbose"] if "verbose" in params else [],
        )(friendly(fn))

    return wrap


def friendly(fn: F) -> F:
    """A DrfleetError becomes one clear message, never a traceback, and exit status 2 (bad
    input), or 1 when a host could not be reached (as every command says of a host it could
    not reach: EXIT_FAILED)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        setup_logging(int(kwargs.get("verbose") or 0))
        try:
            return fn(*args, **kwargs)
        except DrfleetError as exc:
            if os.environ.get("DRFLEET_DEBUG"):
                raise
            code = EXIT_FAILED if isinstance(exc, Unreachable) else EXIT_USAGE
            if kwargs.get("json"):  # a script reads what went wrong where it reads the rest
                said = host_fields(not isinstance(exc, Unreachable), exc)
                print_json({"ok": False, "error": said["error"], "fix": said["fix"]})
            raise Exit(f"drfleet: {exc.message}", code=code) from None
        except KeyboardInterrupt:
            raise Exit("drfleet: interrupted", code=130) from None

    return wrapper  # type: ignore[return-value]


def setup_logging(verbose: int = 0) -> None:
    """-v (or DRFLEET_DEBUG=1): drfleet's own debug log. Other libraries stay at WARNING
    (botocore's debug log prints access key ids and signatures, paramiko's every packet)
    unless -vvv (or DRFLEET_DEBUG=all) asks for them too."""
    debug = os.environ.get("DRFLEET_DEBUG", "")
    if debug or verbose:
        everything = debug == "all" or verbose >= 3
        logging.basicConfig(
            level=logging.DEBUG if everything else logging.WARNING,
            format="%(asctime)s %(name)s %(message)s",
        )
        logging.getLogger("drfleet").setLevel(logging.DEBUG)


def options(known_hosts: str | None, accept_new_host_keys: bool, forks: int) -> Options:
    if forks < 1:
        raise DrfleetError(f"--forks must be at least 1, not {forks}")
    return Options(known_hosts=known_hosts, accept_new_host_keys=accept_new_host_keys, limit=forks)


def inventory_and_options(
    inventory: str | None,
    known_hosts: str | None,
    accept_new_host_keys: bool,
    forks: int = DEFAULT_LIMIT,
    *,
    env_dir: str | Path | None = None,
    quiet: bool = False,
) -> tuple[inventory_mod.Inventory, Options]:
    """The inventory and how to reach its hosts: what every command that connects needs.
    Says on stderr which inventory it loaded and how many hosts it has (unless quiet: --json),
    so a run from another directory never trains on this machine unawares."""
    inv = inventory_mod.load(inventory, env_dir)
    if not quiet:
        which = inventory_mod.default_path(env_dir) if not inventory else Path(inventory)
        name = (
            "this machine alone (no inventory file found)"
            if inventory_mod.is_embedded(which)
            else str(which)
        )
        n = len(inv.hosts)
        sys.stderr.write(f"inventory: {name}, {n} host{'s' if n != 1 else ''}\n")
    return inv, options(known_hosts, accept_new_host_keys, forks)


WORKERS_NOT_GIVEN = -1  # --workers left out: DR_WORKERS decides


def workers_given(workers: int) -> int:
    """--workers as the planner takes it (0: DR_WORKERS decides); 0 or less given is refused
    (it silently meant one worker)."""
    if workers == WORKERS_NOT_GIVEN:
        return 0
    if workers < 1:
        raise DrfleetError(
            f"--workers {workers}: a run needs at least one worker",
            fix="give --workers 1 or more, or leave it out to take DR_WORKERS from run.env",
        )
    return workers


def print_json(doc: Any) -> None:
    sys.stdout.write(_json.dumps(doc, indent=2, sort_keys=False) + "\n")


def show(result: Any, json: bool) -> None:
    """A command's typed result (runs/results.py, store/results.py) as its --json document
    or its lines; exit 1 when it failed (a host could not be told)."""
    if json:
        print_json(result.as_json())
    else:
        for line in result.lines():
            print(line)
    if result.failed:
        raise Exit(code=1)


def print_json_line(doc: Any) -> None:
    """One document per line (JSON Lines), for output that goes on (watch, logs)."""
    sys.stdout.write(_json.dumps(doc, sort_keys=False) + "\n")
    sys.stdout.flush()


def shipped_playbook(name: str) -> Path:
    """One of drfleet's playbooks: playbooks/NAME here, in the checkout, or in the package."""
    for candidate in (
        Path("playbooks") / name,
        Path(__file__).resolve().parents[2] / "playbooks" / name,
        Path(__file__).resolve().parents[1] / "data" / "playbooks" / name,
    ):
        if candidate.exists():
            return candidate
    raise DrfleetError(
        f"no playbooks/{name} here or in the drfleet installation", fix="pass --playbook FILE"
    )

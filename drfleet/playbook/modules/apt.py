"""Debian packages: present, absent or latest; an apt repository with its signing key.

The package cache is refreshed only when something is to be installed and the cache is older
than cache_valid_time, so a run that installs nothing never counts as a change."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from drfleet.playbook.model import Change, ModuleFailure, Needs, Step
from drfleet.playbook.modules.base import Arg, Module
from drfleet.playbook.modules.files import atomic_write
from drfleet.shell import Command, Raw, cmd, join

if TYPE_CHECKING:
    from drfleet.hosts.hostfacts import Facts
    from drfleet.playbook.context import HostContext

_PKG = re.compile(r"^[a-z0-9][a-z0-9+.-]*(=[A-Za-z0-9.+:~-]+)?\Z")
APT_ENV = Raw("env DEBIAN_FRONTEND=noninteractive")
APT_OPTS = (
    "-y",
    "-q",
    "-o",
    "Dpkg::Options::=--force-confdef",
    "-o",
    "Dpkg::Options::=--force-confold",
)
LOCK_WAIT = ("-o", "DPkg::Lock::Timeout=300")


def install(install_cmd: Command, names: list[str]) -> Command:
    """apt-get install; if dpkg was interrupted earlier (a host that lost power mid-install),
    `dpkg --configure -a` first, then install again. An apt whose controller died runs on to
    the end (tested); the re-run waits for its lock (DPkg::Lock::Timeout)."""
    once = Command((APT_ENV, *install_cmd.parts, *names))
    # dpkg takes no lock timeout: retry while another apt (one left running by a controller
    # that died) still holds it, for up to 5 minutes like DPkg::Lock::Timeout
    recover = Command(
        (
            Raw("n=0; until"),
            APT_ENV,
            *cmd("dpkg", "--configure", "-a").parts,
            Raw('|| [ "$n" -ge 60 ]; do n=$((n+1)); sleep 5; done'),
        )
    )
    return Command((*once.parts, Raw("|| {"), *recover.parts, Raw(";"), *once.parts, Raw(";}")))


def apt_update() -> Command:
    """apt-get update. DPkg::Lock::Timeout waits for dpkg's lock only; the lists lock fails
    at once while another apt holds it (one left running by a controller that died, or
    unattended-upgrades). So: try again every 5 s while that is the error, for up to 5
    minutes; any other error fails at once, with apt's message and status."""
    once = Command((APT_ENV, *cmd("apt-get", "update", "-q", *LOCK_WAIT).parts))
    return Command(
        (
            Raw("n=0; until out=$("),
            *once.parts,
            Raw("2>&1); do case $out in *'Could not get lock'*)"),
            Raw('[ "$n" -ge 60 ] && { printf \'%s\\n\' "$out" >&2; exit 100; };'),
            Raw("n=$((n+1)); sleep 5;;"),
            Raw("*) printf '%s\\n' \"$out\" >&2; exit 100;; esac; done; printf '%s\\n' \"$out\""),
        )
    )


def packages(value: Any) -> list[str]:
    names = [value] if isinstance(value, str) else list(value or [])
    for n in names:
        if not isinstance(n, str) or not _PKG.fullmatch(n):
            raise ModuleFailure(f"{n!r} is not a Debian package name")
    return names


class Apt(Module):
    name = "apt"
    spec = {
        "name": Arg((str, list)),
        "state": Arg(default="present", choices=("present", "absent", "latest")),
        "update_cache": Arg((bool,), default=True),
        "cache_valid_time": Arg((int,), default=3600),
        "install_recommends": Arg((bool,), default=False),
        "repo": Arg(),  # a deb line, e.g. "deb [signed-by=/etc/apt/keyrings/x.asc] URL suite main"
        "repo_file": Arg(),  # its file name under /etc/apt/sources.list.d/
        "key_url": Arg(),
        "key_file": Arg(),  # where the key goes, e.g. /etc/apt/keyrings/docker.asc
    }
    touches = frozenset({"packages", "files", "docker"})  # installing docker starts it

    def needs(self, args: dict[str, Any]) -> Needs:
        n = Needs({"packages"})
        if args.get("repo_file"):
            path = f"/etc/apt/sources.list.d/{args['repo_file']}"
            n = n | Needs({"files"}, files={path}, contents={path})
        if args.get("key_file"):
            n = n | Needs({"files"}, files={args["key_file"]})
        return n

    def change(self, args: dict[str, Any], facts: Facts, ctx: HostContext) -> Change | None:
        steps: list[Step] = []
        what: list[str] = []
        repo_changed = False
        if args["repo"]:
            if not args["repo_file"]:
                raise ModuleFailure("repo needs repo_file (its name in sources.list.d)")
            key_present = bool(args["key_file"]) and facts.file(args["key_file"]).exists
            if args["key_url"] and args["key_file"] and not key_present:
                tmp = args["key_file"] + ".drfleet-new"
                steps.append(
                    Step(
                        join(
                            [
                                cmd(
                                    "mkdir",
                                    "-p",
                                    "-m",
                                    "0755",
                                    args["key_file"].rsplit("/", 1)[0],
                                ),
                                cmd("curl", "-fsSL", "--retry", "3", "-o", tmp, args["key_url"]),
                                cmd("chmod", "0644", tmp),
                                cmd("mv", "-f", tmp, args["key_file"]),
                            ]
                        )
                    )
                )
                what.append(f"signing key {args['key_file']}")
            path = f"/etc/apt/sources.list.d/{args['repo_file']}"
            line = args["repo"].strip() + "\n"
            if facts.file(path).content != line:
                steps.append(atomic_write(path, "0644", "root", "root", line.encode()))
                what.append(f"repository {path}")
                repo_changed = True
        names = packages(args["name"])
        installed = facts.packages
        state = args["state"]
        if state == "absent":
            remove = [n for n in names if n.split("=")[0] in installed]
            if remove:
                steps.append(
                    Step(
                        Command(
                            (
                                APT_ENV,
                                *cmd("apt-get", "remove", *APT_OPTS, *LOCK_WAIT, *remove).parts,
                            )
                        )
                    )
                )
                what.append("remove " + " ".join(remove))
            return Change(steps, ", ".join(what)) if steps else None
        missing = [n for n in names if n.split("=")[0] not in installed]
        install_cmd = cmd(
            "apt-get",
            "install",
            *APT_OPTS,
            *LOCK_WAIT,
            *(() if args["install_recommends"] else ("--no-install-recommends",)),
        )
        stale = time.time() - facts.apt_updated_at > args["cache_valid_time"]
        if missing or (state == "latest" and names):
            update = None
            if repo_changed or (args["update_cache"] and stale):
                update = apt_update()
            if missing:
                steps += [Step(update)] if update else []
                steps.append(Step(install(install_cmd, missing)))
                what.append("install " + " ".join(missing))
            if state == "latest":
                present = [n for n in names if n not in missing]
                if present:
                    # simulate first: only an upgrade that would happen counts as a change
                    sim = Command(
                        (
                            APT_ENV,
                            *cmd("apt-get", "-s", "install", "--only-upgrade", *present).parts,
                        )
                    )
                    unless = Command((Raw("!"), *sim.parts, Raw("| grep -q '^Inst '")))
                    if update and not missing:
                        steps.append(Step(update, unless=unless))
                    steps.append(
                        Step(install(install_cmd, ["--only-upgrade", *present]), unless=unless)
                    )
                    what.append("upgrade " + " ".join(present) + " if newer")
        elif repo_changed:
            steps.append(Step(apt_update()))
        return Change(steps, ", ".join(what)) if steps else None

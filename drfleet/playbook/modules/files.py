"""Files on the host: file, copy, template, json_merge. Content is compared by hash, shown as
a unified diff, and written atomically (temp file in the same directory, then rename)."""

from __future__ import annotations

import difflib
import hashlib
import json
import posixpath
from typing import TYPE_CHECKING, Any

from drfleet.hosts.hostfacts import FileFact
from drfleet.playbook.model import Change, ModuleFailure, Needs, Step
from drfleet.playbook.modules.base import Arg, Module
from drfleet.shell import Command, Raw, cmd, join

if TYPE_CHECKING:
    from drfleet.hosts.hostfacts import Facts
    from drfleet.playbook.context import HostContext

ATTRS = {"mode": Arg((str, int)), "owner": Arg(), "group": Arg()}


def _mode(value: Any) -> str | None:
    if value is None:
        return None
    text = oct(value)[2:] if isinstance(value, int) else str(value)
    text = text.zfill(4)
    if len(text) != 4 or any(c not in "01234567" for c in text):
        raise ModuleFailure(f"mode {value!r} is not an octal mode like '0644'")
    return text


def atomic_write(
    path: str, mode: str | None, owner: str | None, group: str | None, data: bytes
) -> Step:
    """Writes data to path: a temp file beside it, checked against data's SHA-256 (a
    controller that dies mid-stream leaves a short temp file, never a short target),
    attributes set, then one rename."""
    directory, name = posixpath.split(path)
    parts: list[Command] = [
        cmd("mkdir", "-p", directory or "/"),
        Command((Raw("tmp=$(mktemp"), f"{directory}/.{name}.drfleet.XXXXXX", Raw(")"))),
        Command((Raw("trap 'rm -f \"$tmp\"' EXIT"),)),
        Command((Raw('cat > "$tmp"'),)),
        Command(
            (
                Raw("printf '%s  %s\\n'"),
                hashlib.sha256(data).hexdigest(),
                Raw('"$tmp" | sha256sum -c --status'),
            )
        ),
    ]
    parts.append(Command((Raw("chmod"), mode or "0644", Raw('"$tmp"'))))
    if owner or group:
        parts.append(
            Command((Raw("chown"), f"{owner or ''}:{group or ''}".rstrip(":"), Raw('"$tmp"')))
        )
    parts.append(Command((Raw("mv -f"), Raw('"$tmp"'), path)))
    return Step(join(parts), stdin=data)


def attr_steps(
    path: str, info: FileFact, mode: str | None, owner: str | None, group: str | None
) -> tuple[list[Step], list[str]]:
    steps, what = [], []
    if mode and info.mode != mode:
        steps.append(Step(cmd("chmod", mode, path)))
        what.append(f"mode {info.mode or None} -> {mode}")
    if (owner and info.owner != owner) or (group and info.group != group):
        steps.append(Step(cmd("chown", f"{owner or ''}:{group or ''}".rstrip(":"), path)))
        what.append(
            f"owner {info.owner or None}:{info.group or None} -> "
            f"{owner or info.owner or None}:{group or info.group or None}"
        )
    return steps, what


def content_change(path: str, data: bytes, facts: Facts, args: dict[str, Any]) -> Change | None:
    info = facts.file(path)
    mode = _mode(args.get("mode"))
    owner, group = args.get("owner"), args.get("group")
    if info.exists and info.type not in ("file", ""):
        raise ModuleFailure(f"{path} exists and is a {info.type}, not a file")
    if info.sha256 == hashlib.sha256(data).hexdigest():
        steps, what = attr_steps(path, info, mode, owner, group)
        return Change(steps, f"{path}: " + ", ".join(what)) if steps else None
    old = (info.content or "") if info.exists else ""
    diff = "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            data.decode("utf-8", "replace").splitlines(keepends=True),
            fromfile=f"{path} (host)" if info.exists else "/dev/null",
            tofile=f"{path} (wanted)",
        )
    )
    keep_mode = mode or (info.mode or None if info.exists else None)
    step = atomic_write(path, keep_mode, owner, group, data)
    verb = "update" if info.exists else "create"
    return Change([step], f"{verb} {path} ({len(data)} bytes)", diff)


class File(Module):
    name = "file"
    spec = {
        "path": Arg(required=True),
        "src": Arg(),
        "state": Arg(default="file", choices=("file", "directory", "link", "absent", "touch")),
        **ATTRS,
    }
    touches = frozenset({"files"})

    def needs(self, args: dict[str, Any]) -> Needs:
        return Needs({"files"}, files={args["path"]})

    def change(self, args: dict[str, Any], facts: Facts, ctx: HostContext) -> Change | None:
        path, state = args["path"], args["state"]
        info = facts.file(path)
        mode = _mode(args["mode"])
        if state == "absent":
            return (
                Change([Step(cmd("rm", "-rf", "--", path))], f"remove {path}")
                if info.exists
                else None
            )
        if state == "link":
            if not args["src"]:
                raise ModuleFailure("state: link needs src (what the link points to)")
            if info.type == "link" and info.target == args["src"]:
                return None
            return Change(
                [Step(cmd("ln", "-sfn", args["src"], path))], f"link {path} -> {args['src']}"
            )
        steps: list[Step] = []
        msg = ""
        if not info.exists:
            steps.append(
                Step(cmd("mkdir", "-p", path) if state == "directory" else cmd("touch", path))
            )
            msg = f"create {state} {path}"
            info = FileFact()
        elif state == "directory" and info.type != "directory":
            raise ModuleFailure(f"{path} exists and is a {info.type}, not a directory")
        elif state in ("file", "touch") and info.type != "file":
            raise ModuleFailure(f"{path} exists and is a {info.type}, not a file")
        more, what = attr_steps(path, info, mode, args["owner"], args["group"])
        steps += more
        if not steps:
            return None
        return Change(steps, ", ".join(filter(None, [msg, *what])) or path)


class Copy(Module):
    name = "copy"
    spec = {"dest": Arg(required=True), "content": Arg(), "src": Arg(), **ATTRS}
    touches = frozenset({"files", "units"})  # a unit file changed: systemd wants a reload

    def needs(self, args: dict[str, Any]) -> Needs:
        return Needs({"files"}, files={args["dest"]}, contents={args["dest"]})

    def change(self, args: dict[str, Any], facts: Facts, ctx: HostContext) -> Change | None:
        if (args["content"] is None) == (args["src"] is None):
            raise ModuleFailure("copy needs exactly one of content and src")
        data = (
            args["content"].encode() if args["content"] is not None else ctx.read_local(args["src"])
        )
        return content_change(args["dest"], data, facts, args)


class Template(Module):
    name = "template"
    spec = {"src": Arg(required=True), "dest": Arg(required=True), **ATTRS}
    touches = frozenset({"files", "units"})

    def needs(self, args: dict[str, Any]) -> Needs:
        return Needs({"files"}, files={args["dest"]}, contents={args["dest"]})

    def change(self, args: dict[str, Any], facts: Facts, ctx: HostContext) -> Change | None:
        text = ctx.render_template(args["src"])
        return content_change(args["dest"], text.encode(), facts, args)


def deep_merge(base: Any, extra: Any) -> Any:
    if isinstance(base, dict) and isinstance(extra, dict):
        out = dict(base)
        for k, v in extra.items():
            out[k] = deep_merge(base.get(k), v) if k in base else v
        return out
    return extra


class JsonMerge(Module):
    """Merges keys into a JSON file (e.g. /etc/docker/daemon.json), keeping what is there."""

    name = "json_merge"
    spec = {"path": Arg(required=True), "data": Arg((dict,), required=True), **ATTRS}
    touches = frozenset({"files"})

    def needs(self, args: dict[str, Any]) -> Needs:
        return Needs({"files"}, files={args["path"]}, contents={args["path"]})

    def change(self, args: dict[str, Any], facts: Facts, ctx: HostContext) -> Change | None:
        path = args["path"]
        info = facts.file(path)
        current: Any = {}
        if info.exists:
            if info.content is None:
                raise ModuleFailure(f"{path} is too large to merge into")
            try:
                current = json.loads(info.content or "{}")
            except ValueError as exc:
                raise ModuleFailure(
                    f"{path} is not valid JSON ({exc}); fix or remove it, drfleet will not guess"
                ) from None
            if not isinstance(current, dict):
                raise ModuleFailure(f"{path} holds a JSON {type(current).__name__}, not an object")
        merged = deep_merge(current, args["data"])
        if merged == current and info.exists:
            steps, what = attr_steps(path, info, _mode(args["mode"]), args["owner"], args["group"])
            return Change(steps, f"{path}: " + ", ".join(what)) if steps else None
        data = (json.dumps(merged, indent=2, sort_keys=True) + "\n").encode()
        return content_change(path, data, facts, args)

"""Playbook YAML -> Playbook. Everything is checked here, before any host is touched: the
structure, each task's one module and its arguments, `when:` expressions, handler names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drfleet import yamlsrc
from drfleet.errors import ConfigError, did_you_mean, lead_in
from drfleet.playbook import templating
from drfleet.playbook.model import Play, Playbook, Task
from drfleet.playbook.modules import FLEET_SPECS, MODULES
from drfleet.playbook.modules.base import validate
from drfleet.yamlsrc import Located

PLAY_KEYS = ("name", "hosts", "defaults", "vars", "tasks", "handlers", "become")
TASK_KEYS = ("name", "when", "notify", "become", "ignore_errors", "include_tasks")
ALL_MODULES = sorted([*MODULES, *FLEET_SPECS])


def load(path: str | Path) -> Playbook:
    p = Path(path)
    data = yamlsrc.load_file(p)
    if not isinstance(data, list) or not data:
        raise ConfigError("a playbook is a list of plays (`- hosts: all` ...)", where=f"{p}:1")
    plays = tuple(_play(item, p, i) for i, item in enumerate(data))
    return Playbook(str(p), plays)


def _err(file: Path, line: int, what: str, fix: str | None = None) -> ConfigError:
    return ConfigError(what, where=f"{file}:{line}", fix=fix)


def _play(node: Any, file: Path, index: int) -> Play:
    if not isinstance(node, Located):
        raise _err(file, 1, f"play {index + 1} must be a mapping with hosts and tasks")
    for key in node:
        if key not in PLAY_KEYS:
            raise _err(
                file,
                node.line_of(key),
                f"unknown key {key!r} in a play",
                fix=_hint(key, PLAY_KEYS, "a play has"),
            )
    hosts = node.get("hosts", "all")
    if not isinstance(hosts, str):
        raise _err(file, node.line_of("hosts"), "hosts: must be a group name or `all`")
    vars_ = node.get("vars") or {}
    if not isinstance(vars_, dict):
        raise _err(file, node.line_of("vars"), "vars: must be a mapping")
    defaults = node.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise _err(file, node.line_of("defaults"), "defaults: must be a mapping")
    become = node.get("become")
    handlers = tuple(_tasks(node.get("handlers") or [], file, node.line_of("handlers"), (), become))
    names = {h.name for h in handlers}
    tasks = tuple(_tasks(node.get("tasks") or [], file, node.line_of("tasks"), (), become))
    for t in tasks:
        for n in t.notify:
            if n not in names:
                raise ConfigError(
                    f"task {t.name!r} notifies {n!r}, which is not a handler of this play",
                    where=t.source,
                    fix=_hint(n, names, "handlers are") if names else "add it under handlers:",
                )
    if become is not None and not isinstance(become, bool):
        raise _err(file, node.line_of("become"), "become: must be true or false")
    return Play(
        str(node.get("name") or hosts),
        hosts,
        dict(vars_),
        tasks,
        handlers,
        f"{file}:{node.line}",
        become,
        dict(defaults),
    )


def _tasks(items: Any, file: Path, line: int, stack: tuple[Path, ...], become: Any) -> list[Task]:
    if not isinstance(items, list):
        raise _err(file, line, "tasks: must be a list of tasks")
    out: list[Task] = []
    for item in items:
        if not isinstance(item, Located):
            raise _err(file, line, "each task must be a mapping (`- name: ...`)")
        out.extend(_task(item, file, stack, become))
    return out


def _task(node: Located, file: Path, stack: tuple[Path, ...], become: Any) -> list[Task]:
    where = f"{file}:{node.line}"
    when = node.get("when")
    if when is not None:
        when = str(when)
        templating.check_expression(when, f"{file}:{node.line_of('when')}")
    if "include_tasks" in node:
        extra = [k for k in node if k not in ("include_tasks", "when", "name")]
        if extra:
            raise _err(
                file,
                node.line_of(extra[0]),
                f"include_tasks takes only when and name, not {extra[0]!r}",
            )
        target = (file.parent / str(node["include_tasks"])).resolve()
        if target in stack or target == file.resolve():
            raise _err(file, node.line, f"include_tasks {node['include_tasks']} includes itself")
        data = yamlsrc.load_file(target)
        included = _tasks(data or [], target, 1, (*stack, file.resolve()), become)
        if when:
            included = [_and_when(t, when) for t in included]
        return included
    modules = [k for k in node if k not in TASK_KEYS]
    if not modules:
        raise _err(
            file,
            node.line,
            "a task needs a module (e.g. `apt: {name: jq}`)",
            fix=f"modules: {', '.join(ALL_MODULES)}",
        )
    if len(modules) > 1:
        unknown = [m for m in modules if m not in ALL_MODULES]
        key = unknown[0] if unknown else modules[1]
        raise _err(
            file,
            node.line_of(key),
            f"unknown key {key!r} in a task"
            if unknown
            else f"a task has one module; this one has {', '.join(modules)}",
            fix=_hint(key, [*ALL_MODULES, *TASK_KEYS], "modules and task keys are"),
        )
    module = modules[0]
    if module not in ALL_MODULES:
        raise _err(
            file,
            node.line_of(module),
            f"unknown module {module!r}",
            fix=_hint(module, ALL_MODULES, "modules are"),
        )
    args = node[module] if node[module] is not None else {}
    if not isinstance(args, dict):
        raise _err(file, node.line_of(module), f"{module}: arguments must be a mapping")
    name = str(node.get("name") or module)
    spec = FLEET_SPECS[module] if module in FLEET_SPECS else MODULES[module].spec
    try:
        validate(module, spec, dict(args), rendered=False)
    except ValueError as exc:
        raise ConfigError(f"task {name!r}: {exc}", where=f"{file}:{node.line_of(module)}") from None
    for key in ("shell", "unless") if module == "command" else ():
        if isinstance(args.get(key), str):
            templating.check_shell(
                args[key], f"{file}:{node.line_of(module)}: task {name!r}: {key}"
            )
    notify = node.get("notify") or []
    notify = [notify] if isinstance(notify, str) else list(notify)
    task_become = node.get("become", become)
    if task_become is not None and not isinstance(task_become, bool):
        raise _err(file, node.line_of("become"), "become: must be true or false")
    return [
        Task(
            name=name,
            module=module,
            args=dict(args),
            source=where,
            when=when,
            notify=tuple(str(n) for n in notify),
            become=task_become,
            ignore_errors=bool(node.get("ignore_errors", False)),
        )
    ]


def _and_when(task: Task, when: str) -> Task:
    combined = f"({when}) and ({task.when})" if task.when else when
    return Task(
        task.name,
        task.module,
        task.args,
        task.source,
        combined,
        task.notify,
        task.become,
        task.ignore_errors,
    )


def _hint(key: str, known: Any, lead: str) -> str:
    known = sorted(known)
    return lead_in(did_you_mean(key, known)) + f"{lead}: {', '.join(known)}"

"""docs/ARCHITECTURE.md matches the code: every module is listed with its size (within a
margin), and the import rules it states hold."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import REPO

DOC = REPO / "docs" / "ARCHITECTURE.md"
WIRE = {
    "drfleet.hosts.remote",
    "drfleet.hosts.facts",
    "drfleet.runs.capacity",
    "drfleet.hosts.agent_client",
    "drfleet.runs.converge",
    "drfleet.runs.launch",
    "drfleet.hosts.tunnel",
    "drfleet.runs.storage",
    "drfleet.viewer",
    "paramiko",
    "fabric",
    "docker",
    "boto3",
}
# no I/O of their own (test_the_pure_modules_do_no_io) and no wire reached, transitively
PURE = (
    "drfleet.drfc.checks",
    "drfleet.drfc.eval_params",
    "drfleet.drfc.images",
    "drfleet.drfc.params",
    "drfleet.drfc.settings",
    "drfleet.runs.placement",
    "drfleet.runs.specs",
    "drfleet.runs.loganalysis",
    "drfleet.runs.observe",
    "drfleet.images.image_layers",
    "drfleet.images.relay_trust",
    "drfleet.runs.sharing",
    "drfleet.runs.simstats",
    "drfleet.names",
    "drfleet.errors",
    "drfleet.shell",
    "drfleet.runs.results",
    "drfleet.store.results",
    "drfleet.store.droa",
    "drfleet.cloud.fleet",
    "drfleet.cloud.results",
    "drfleet.cloud.hostkey",
    "drfleet.runs.increment",
    "drfleet.progress",
    "drfleet.runs.training_progress",
    "drfleet.playbook.model",
    "drfleet.playbook.templating",
    "drfleet.playbook.shellvalues",
    "drfleet.playbook.modules.apt",
    "drfleet.playbook.modules.base",
    "drfleet.playbook.modules.docker",
    "drfleet.playbook.modules.files",
    "drfleet.playbook.modules.system",
)
# they read and write the env dir and the user's DRfC files, never the wire (transitively)
LOCAL = (
    "drfleet.drfc.config",
    "drfleet.drfc.envfile",
    "drfleet.runs.runstate",
    "drfleet.runs.training",
)
# the one module that applies a desired state on a host and hands out a generation
EXECUTOR = "drfleet.runs.execute"


def modules() -> dict[str, Path]:
    out = {}
    for base, prefix in (
        (REPO / "drfleet", "drfleet"),
        (REPO / "agent" / "drfleet_agent", "drfleet_agent"),
    ):
        for p in sorted(base.rglob("*.py")):
            if "data" in p.relative_to(base).parts:
                continue
            parts = [prefix, *p.relative_to(base).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = p
    return out


def imports(path: Path, typing: bool = False) -> set[str]:
    """What a module imports at run time, in functions too; typing: also what it imports
    under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    skip = {
        id(n)
        for node in ast.walk(tree)
        if not typing and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    out: set[str] = set()
    for n in ast.walk(tree):
        if id(n) in skip:
            continue
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            out.add(n.module)
            out |= {f"{n.module}.{a.name}" for a in n.names}
    return out


def graph(typing: bool = True) -> dict[str, set[str]]:
    """module -> the modules of drfleet and drfleet_agent it imports (type-only ones too)."""
    mods = modules()
    return {m: {i for i in imports(p, typing) if i in mods} - {m} for m, p in mods.items()}


def reached(start: str, g: dict[str, set[str]]) -> set[str]:
    """Every module start imports, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in g.get(todo.pop(), set()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def listed_in(name: str, names: tuple[str, ...]) -> bool:
    """name is one of names or a module of one of them (drfleet.store.droa, not droa_client)."""
    return any(name == n or name.startswith(n + ".") for n in names)


def touches(imported: set[str], targets: set[str]) -> set[str]:
    return {i for i in imported for t in targets if i == t or i.startswith(t + ".")}


def test_every_module_is_in_the_doc_with_its_size() -> None:
    listed = {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^\| `([\w.]+)` \| (\d+) \|", DOC.read_text(), re.M)
    }
    code = {
        name: len(p.read_text().splitlines())
        for name, p in modules().items()
        if len(p.read_text().splitlines()) >= 25  # packages' __init__ and tiny mains aside
    }
    assert sorted(code) == sorted(listed), "update the module table in docs/ARCHITECTURE.md"
    off = {m: (listed[m], n) for m, n in code.items() if abs(n - listed[m]) > max(40, n // 5)}
    assert not off, f"sizes in docs/ARCHITECTURE.md are out of date (doc, code): {off}"


def test_the_agent_and_the_probe_import_nothing_of_the_controller() -> None:
    mods = modules()
    for name, path in mods.items():
        if name.startswith("drfleet_agent"):
            assert not touches(imports(path), {"drfleet"}), name
    assert not touches(imports(mods["drfleet.hosts.probe"]), {"drfleet", "drfleet_agent"})


def test_the_pure_core_never_reaches_the_wire_through_any_import() -> None:
    """Transitively, type-only imports included: what a pure module imports, and what that
    imports, never names the wire."""
    mods, g = modules(), graph()
    for name in mods:
        if listed_in(name, PURE + LOCAL):
            seen = reached(name, g) | {name}
            bad = {m: touches(imports(mods[m], True), WIRE) for m in seen}
            bad = {m: t for m, t in bad.items() if t}
            assert not bad, (name, bad)


def test_no_import_circle_even_counting_type_only_imports() -> None:
    g = graph()
    circles = sorted(m for m in g if m in reached(m, g))
    assert not circles, circles


IO_CALLS = {
    "open",
    "read_text",
    "write_text",
    "read_bytes",
    "write_bytes",
    "mkdir",
    "unlink",
    "iterdir",
    "rglob",
    "glob",
    "exists",
    "is_file",
    "is_dir",
    "stat",
    "lstat",
    "resolve",
    "touch",
    "chmod",
    "rmdir",
    "cwd",
    "home",
}
IO_MODULES = {
    "subprocess",
    "socket",
    "fcntl",
    "shutil",
    "tempfile",
    "urllib.request",
    "http",
    "threading",
    "drfleet.localfs",
}


def io_of(path: Path) -> list[str]:
    """The I/O a module's own code does: files opened or statted, processes, sockets, locks,
    anything of os but os.path (pure string work)."""
    found = []
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Call):
            f = n.func
            if isinstance(f, ast.Name) and f.id in ("open", "print", "input"):
                found.append(f"{n.lineno}: {f.id}()")
            elif isinstance(f, ast.Attribute) and f.attr in IO_CALLS:
                found.append(f"{n.lineno}: .{f.attr}()")
        os_attr = isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
        if os_attr and n.value.id == "os" and n.attr != "path":  # type: ignore[attr-defined]
            found.append(f"{n.lineno}: os.{n.attr}")  # type: ignore[attr-defined]
        names = (
            [a.name for a in n.names]
            if isinstance(n, ast.Import)
            else [n.module or ""]
            if isinstance(n, ast.ImportFrom)
            else []
        )
        for m in names:
            if any(m == t or m.startswith(t + ".") for t in IO_MODULES):
                found.append(f"{n.lineno}: import {m}")
    return found


def test_the_pure_modules_do_no_io() -> None:
    mods = modules()
    listed = [m for m in mods if listed_in(m, PURE)]
    assert len(listed) >= len(PURE)
    for name in listed:
        assert not io_of(mods[name]), (name, io_of(mods[name]))


def test_io_of_finds_io() -> None:
    """The check above would see I/O (so its silence means something)."""
    mods = modules()
    assert io_of(mods["drfleet.runs.runstate"])
    assert io_of(mods["drfleet.drfc.envfile"])


APPLY = {"apply"}
GENERATION = {"next_generation"}


def calls_of(path: Path, names: set[str]) -> list[str]:
    """Where a module calls agent_client.apply / runstate.next_generation (by attribute or by
    a name imported from those modules)."""
    tree = ast.parse(path.read_text())
    imported = {
        a.asname or a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom)
        and n.module in ("drfleet.hosts.agent_client", "drfleet.runs.runstate")
        for a in n.names
        if a.name in names
    }
    found = []
    for n in ast.walk(tree):
        if not isinstance(n, ast.Call):
            continue
        f = n.func
        if (
            isinstance(f, ast.Attribute)
            and f.attr in names
            and isinstance(f.value, ast.Name)
            and f.value.id in ("agent_client", "runstate")
        ):
            found.append(f"{n.lineno}: {f.value.id}.{f.attr}")
        elif isinstance(f, ast.Name) and f.id in imported:
            found.append(f"{n.lineno}: {f.id}")
    return found


def test_only_the_executor_applies_a_desired_state_or_hands_out_a_generation() -> None:
    mods = modules()
    assert calls_of(mods[EXECUTOR], APPLY) and calls_of(mods[EXECUTOR], GENERATION)
    for name, path in mods.items():
        if name in (EXECUTOR, "drfleet.hosts.agent_client", "drfleet.runs.runstate"):
            continue
        assert not calls_of(path, APPLY | GENERATION), (name, calls_of(path, APPLY | GENERATION))


CORE = {
    "drfleet",
    "drfleet.names",
    "drfleet.errors",
    "drfleet.shell",
    "drfleet.localfs",
    "drfleet.yamlsrc",
    "drfleet.ui",
    "drfleet.progress",
}
# each part of docs/ARCHITECTURE.md and the parts it may import besides itself and the core
PARTS: dict[str, set[str]] = {
    "drfleet.drfc": set(),
    "drfleet.hosts": set(),
    "drfleet.images": {"drfleet.hosts", "drfleet.playbook.hoststate"},
    "drfleet.playbook": {"drfleet.hosts", "drfleet.images"},
    "drfleet.runs": {"drfleet.drfc", "drfleet.hosts"},
    "drfleet.store": {"drfleet.drfc", "drfleet.hosts", "drfleet.runs"},
    "drfleet.cloud": {"drfleet.hosts"},
    "drfleet.viewer": {"drfleet.drfc", "drfleet.hosts", "drfleet.runs"},
    "drfleet.commandline": {"*"},
    "drfleet.__main__": {"*"},  # python -m drfleet: the command line
}


def part_of(module: str) -> str:
    for part in PARTS:
        if module == part or module.startswith(part + "."):
            return part
    return "core" if module in CORE else module


def test_every_module_is_in_a_part_and_each_part_imports_only_what_it_may() -> None:
    """The folders show the parts: each says in its docstring what it owns and may import,
    and imports nothing else (type-only imports too). The core imports only the core."""
    mods = modules()
    for name, path in mods.items():
        if not name.startswith("drfleet."):
            continue
        part = part_of(name)
        assert part == "core" or part in PARTS, f"{name} is in no part of ARCHITECTURE.md"
        got = {i for i in imports(path, True) if i.startswith("drfleet.") and i in mods}
        if part == "core":
            assert all(part_of(i) == "core" for i in got), (name, got)
            continue
        allowed = PARTS[part]
        if "*" in allowed:
            continue
        for i in got:
            ok = part_of(i) in ("core", part) or any(
                i == a or i.startswith(a + ".") for a in allowed
            )
            assert ok, f"{name} imports {i}: {part} may import only {sorted(allowed)}"
    for part in PARTS:
        init = REPO / part.replace(".", "/") / "__init__.py"
        if init.exists():
            assert ast.get_docstring(ast.parse(init.read_text())), f"{init}: say what it owns"


def test_only_the_command_line_imports_the_commands() -> None:
    for name, path in modules().items():
        if name in ("drfleet.commandline.cli", "drfleet.__main__"):
            continue
        top = {
            "drfleet.commandline.cli",
            "drfleet.runs.launch",
            "drfleet.viewer",
            "drfleet.playbook.runner",
        }
        got = touches(imports(path), top) - {name}
        if name == "drfleet.playbook.loader":
            got -= set()  # the loader builds plays; it never runs them
        assert not got, (name, got)


def test_literal_copies_of_names_match() -> None:
    """The probe and the agent run alone on hosts and keep their own copies of two names."""
    from drfleet_agent.store import DEFAULT_DIR, StateDir

    from drfleet import names
    from drfleet.hosts import probe

    assert str(DEFAULT_DIR) == names.STATE_DIR
    assert str(StateDir().images) == names.IMAGE_PINS
    assert probe.PENDING == names.PENDING_HANDLERS

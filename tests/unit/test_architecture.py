"""docs/ARCHITECTURE.md matches the code: every module is listed with its size (within a
margin), and the import rules it states hold."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import REPO

DOC = REPO / "docs" / "ARCHITECTURE.md"
WIRE = {
    "drfleet.remote",
    "drfleet.facts",
    "drfleet.capacity",
    "drfleet.agent_client",
    "drfleet.converge",
    "drfleet.launch",
    "drfleet.tunnel",
    "drfleet.storage",
    "drfleet.viewer",
    "paramiko",
    "fabric",
    "docker",
    "boto3",
}
PURE = (
    "drfleet.drfc",
    "drfleet.plan",
    "drfleet.specs",
    "drfleet.training",
    "drfleet.observe",
    "drfleet.image_layers",
    "drfleet.relay_trust",
    "drfleet.runstate",
    "drfleet.sharing",
    "drfleet.names",
    "drfleet.errors",
    "drfleet.shell",
    "drfleet.playbook.model",
    "drfleet.playbook.templating",
    "drfleet.playbook.shellvalues",
    "drfleet.playbook.modules",
)


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


def imports(path: Path) -> set[str]:
    """What a module imports at run time (not under `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text())
    skip = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
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
    assert not touches(imports(mods["drfleet.probe"]), {"drfleet", "drfleet_agent"})


def test_the_pure_core_never_imports_the_wire() -> None:
    for name, path in modules().items():
        if name.startswith(PURE):
            assert not touches(imports(path), WIRE), (name, touches(imports(path), WIRE))


def test_only_the_command_line_imports_the_commands() -> None:
    for name, path in modules().items():
        if name in ("drfleet.cli", "drfleet.__main__"):
            continue
        top = {"drfleet.cli", "drfleet.launch", "drfleet.viewer", "drfleet.playbook.runner"}
        got = touches(imports(path), top) - {name}
        if name == "drfleet.playbook.loader":
            got -= set()  # the loader builds plays; it never runs them
        assert not got, (name, got)


def test_literal_copies_of_names_match() -> None:
    """The probe and the agent run alone on hosts and keep their own copies of two names."""
    from drfleet_agent.store import DEFAULT_DIR, StateDir

    from drfleet import names, probe

    assert str(DEFAULT_DIR) == names.STATE_DIR
    assert str(StateDir().images) == names.IMAGE_PINS
    assert probe.PENDING == names.PENDING_HANDLERS

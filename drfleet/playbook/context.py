"""What a module may ask of the run while it plans: templating, the controller's files,
check mode. Modules never open connections themselves."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drfleet.hosts.hostfacts import Facts
from drfleet.hosts.inventory import Host
from drfleet.playbook import templating
from drfleet.playbook.model import ModuleFailure


@dataclass
class HostContext:
    host: Host
    vars: dict[str, Any]
    facts: dict[str, Any]
    base_dir: Path  # the playbook's directory: templates and files are found from there
    check: bool = False
    where: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def namespace(self) -> dict[str, Any]:
        return {
            **self.vars,
            **self.extra,
            "facts": Facts(self.facts),
            "host": {
                "name": self.host.name,
                "address": self.host.address,
                "roles": list(self.host.roles),
                "groups": list(self.host.groups),
                "opengl": self.host.opengl,
                "become": self.host.become,
            },
        }

    def evaluate(self, expr: str) -> Any:
        return templating.evaluate(expr, self.namespace(), self.where)

    def render(self, value: Any, *, shell: bool = False) -> Any:
        return templating.render(value, self.namespace(), self.where, shell=shell)

    def render_template(self, src: str) -> str:
        text = read_local(self.base_dir / "templates", src).decode()
        templating.check_template(text, f"{self.where} (template {src})")
        rendered: str = templating.render(text, self.namespace(), f"{self.where} ({src})")
        return rendered

    def read_local(self, src: str) -> bytes:
        return read_local(self.base_dir / "files", src)


def read_local(base: Path, src: str) -> bytes:
    path = (base / src) if not Path(src).is_absolute() else Path(src)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModuleFailure(f"cannot read {path} on the controller: {exc.strerror}") from None

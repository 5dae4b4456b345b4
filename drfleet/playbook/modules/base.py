"""What every module is: a declared argument spec, the facts it needs, and a pure plan
from (arguments, facts) to the commands that would bring the host to the wish."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from drfleet.errors import did_you_mean, paren
from drfleet.playbook.model import Change, Needs

if TYPE_CHECKING:
    from drfleet.hosts.hostfacts import Facts
    from drfleet.playbook.context import HostContext


@dataclass(frozen=True)
class Arg:
    types: tuple[type, ...] = (str,)
    required: bool = False
    default: Any = None
    choices: tuple[Any, ...] | None = None


def validate(
    module: str, spec: dict[str, Arg], args: dict[str, Any], *, rendered: bool
) -> dict[str, Any]:
    """Checks arguments against the spec; unrendered templates are checked after rendering."""
    for key in args:
        if key not in spec:
            hint = paren(did_you_mean(key, spec))
            raise ValueError(
                f"{module}: unknown argument {key!r}{hint}; known: {', '.join(spec) or '(none)'}"
            )
    out: dict[str, Any] = {}
    for key, arg in spec.items():
        if key not in args or args[key] is None:
            if arg.required:
                raise ValueError(f"{module}: missing argument {key!r}")
            out[key] = arg.default
            continue
        value = args[key]
        if not rendered and isinstance(value, str) and ("{{" in value or "{%" in value):
            out[key] = value
            continue
        if (
            str in arg.types
            and isinstance(value, int | float)
            and not isinstance(value, bool)
            and int not in arg.types
        ):
            value = str(value)
        if isinstance(value, bool) and bool not in arg.types:
            raise ValueError(f"{module}: {key} must be {_names(arg.types)}, not {value!r}")
        if not isinstance(value, arg.types):
            raise ValueError(
                f"{module}: {key} must be {_names(arg.types)}, not {type(value).__name__} {value!r}"
            )
        if arg.choices is not None and value not in arg.choices:
            raise ValueError(
                f"{module}: {key} must be one of {', '.join(map(str, arg.choices))}, not {value!r}"
            )
        out[key] = value
    return out


def _names(types: tuple[type, ...]) -> str:
    names = {
        str: "a string",
        bool: "true or false",
        int: "a number",
        list: "a list",
        dict: "a mapping",
    }
    return " or ".join(names.get(t, t.__name__) for t in types)


class Module:
    name: ClassVar[str]
    spec: ClassVar[dict[str, Arg]]
    touches: ClassVar[frozenset[str]] = frozenset()  # fact sections a change makes stale

    def needs(self, args: dict[str, Any]) -> Needs:
        return Needs()

    def change(self, args: dict[str, Any], facts: Facts, ctx: HostContext) -> Change | None:
        """None: already so. A Change: the steps that make it so. ModuleFailure: refuse."""
        raise NotImplementedError

"""Shell commands that quote every value and keep secrets out of what is shown.

Nothing is formatted into a shell string by hand anywhere in drfleet: a `Command` is a list of
parts, each quoted on rendering, except `Raw` fragments, which are constants written in code
(operators such as `&&`, `|`, redirections).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass


class Secret:
    """A value that reaches the remote shell but never a log, a message or a repr."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.value == self.value

    def __hash__(self) -> int:
        return hash(("Secret", self.value))


class Raw(str):
    """A literal shell fragment. Only for constants in drfleet's own code, never for input."""


@dataclass(frozen=True)
class Command:
    parts: tuple[Part, ...]

    def render(self) -> str:
        """The string the remote shell runs, with secrets in place."""
        return " ".join(_quote(p, reveal=True) for p in self.parts)

    def display(self) -> str:
        """The string shown to people and logs: secrets masked."""
        return " ".join(_quote(p, reveal=False) for p in self.parts)

    @property
    def has_secret(self) -> bool:
        return any(
            isinstance(p, Secret) or (isinstance(p, Command) and p.has_secret) for p in self.parts
        )

    def secrets(self) -> tuple[str, ...]:
        """The secret values in it (nested commands' too), to mask in what it prints."""
        out: list[str] = []
        for p in self.parts:
            if isinstance(p, Secret) and p.value:
                out.append(p.value)
            elif isinstance(p, Command):
                out.extend(p.secrets())
        return tuple(out)

    def __str__(self) -> str:
        return self.display()

    def then(self, other: Command, op: str = "&&") -> Command:
        return Command((*self.parts, Raw(op), *other.parts))


# A Command inside a Command is one argument: the inner command, quoted as a whole.
Part = str | Secret | Raw | Command


def _quote(part: Part, *, reveal: bool) -> str:
    if isinstance(part, Raw):
        return str(part)
    if isinstance(part, Secret):
        return shlex.quote(part.value) if reveal else "'***'"
    if isinstance(part, Command):
        return shlex.quote(part.render() if reveal else part.display())
    return shlex.quote(part)


def mask(text: str, secrets: tuple[str, ...]) -> str:
    """text with every secret value replaced by ***."""
    for s in sorted(secrets, key=len, reverse=True):
        text = text.replace(s, "***")
    return text


def cmd(*argv: Part) -> Command:
    """A simple command: cmd("apt-get", "install", "-y", package)."""
    return Command(tuple(argv))


def join(commands: Iterable[Command], op: str = "&&") -> Command:
    parts: list[Part] = []
    for c in commands:
        if parts:
            parts.append(Raw(op))
        parts.extend(c.parts)
    return Command(tuple(parts))


def sh(command: Command) -> Command:
    """`sh -c '<command>'`, e.g. to run a compound command under sudo."""
    return Command((Raw("sh"), Raw("-c"), command))

"""The one error type a user sees: where the problem is, what is wrong, and what to do."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DrfleetError(Exception):
    """A problem the user can fix. Printed as one message, never as a traceback."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text


def host_fields(reachable: bool, error: BaseException | str | None) -> dict[str, object]:
    """How every command's JSON says a host's trouble: whether it was reached, what is wrong
    (where, what) and what to do, as fields of their own (None when all is well)."""
    if isinstance(error, DrfleetError):
        said = f"{error.where}: {error.what}" if error.where else error.what
        return {"reachable": reachable, "error": said, "fix": error.fix}
    return {"reachable": reachable, "error": str(error) if error else None, "fix": None}


class ConfigError(DrfleetError):
    """Bad input in a file the user wrote (inventory, playbook, env file)."""


class HostKeyError(DrfleetError):
    """A host's SSH key is unknown or has changed; nothing was run there."""


def did_you_mean(word: str, known: Iterable[str], cutoff: float = 0.6, quote: bool = True) -> str:
    """ "did you mean 'x'?" for the closest known word, or "": the one suggestion helper."""
    close = difflib.get_close_matches(word, list(known), 1, cutoff=cutoff)
    if not close:
        return ""
    return f"did you mean {close[0]!r}?" if quote else f"did you mean {close[0]}?"


def paren(hint: str) -> str:
    """ " (hint)" or "" """
    return f" ({hint})" if hint else ""


def lead_in(hint: str) -> str:
    """ "hint " or "" """
    return f"{hint} " if hint else ""

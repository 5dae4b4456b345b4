"""The one error type a user sees: where the problem is, what is wrong, and what to do."""

from __future__ import annotations


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


class ConfigError(DrfleetError):
    """Bad input in a file the user wrote (inventory, playbook, env file)."""


class HostKeyError(DrfleetError):
    """A host's SSH key is unknown or has changed; nothing was run there."""

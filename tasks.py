"""`invoke <task>` from a checkout: the same namespace as the `drfleet` command."""

from drfleet.commandline.cli import ns

__all__ = ["ns"]

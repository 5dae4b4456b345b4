"""drfleet-agent: keeps one host's assigned containers running (see ARCHITECTURE.md)."""

__version__ = "0.3.0"

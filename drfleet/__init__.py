"""drfleet: multi-host DeepRacer training fleets over SSH."""

__version__ = "0.1.0"

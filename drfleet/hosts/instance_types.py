"""Known EC2 shapes, so an inventory can say `instance_type: c5.4xlarge` instead of numbers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shape:
    vcpus: int
    memory_mb: int
    gpus: int = 0
    gpu_memory_mb: int = 0


def _gib(n: int) -> int:
    return n * 1024


SHAPES: dict[str, Shape] = {
    "c5.2xlarge": Shape(8, _gib(16)),
    "c5.4xlarge": Shape(16, _gib(32)),
    "c5.9xlarge": Shape(36, _gib(72)),
    "c5.12xlarge": Shape(48, _gib(96)),
    "c5.18xlarge": Shape(72, _gib(144)),
    "c6i.2xlarge": Shape(8, _gib(16)),
    "c6i.4xlarge": Shape(16, _gib(32)),
    "c6i.8xlarge": Shape(32, _gib(64)),
    "c7i.2xlarge": Shape(8, _gib(16)),
    "c7i.4xlarge": Shape(16, _gib(32)),
    "c7i.8xlarge": Shape(32, _gib(64)),
    "m5.4xlarge": Shape(16, _gib(64)),
    "g4dn.xlarge": Shape(4, _gib(16), 1, 15360),
    "g4dn.2xlarge": Shape(8, _gib(32), 1, 15360),
    "g4dn.4xlarge": Shape(16, _gib(64), 1, 15360),
    "g4dn.8xlarge": Shape(32, _gib(128), 1, 15360),
    "g4dn.12xlarge": Shape(48, _gib(192), 4, 15360),
    "g5.xlarge": Shape(4, _gib(16), 1, 23028),
    "g5.2xlarge": Shape(8, _gib(32), 1, 23028),
    "g5.4xlarge": Shape(16, _gib(64), 1, 23028),
    "g6.2xlarge": Shape(8, _gib(32), 1, 23034),
}

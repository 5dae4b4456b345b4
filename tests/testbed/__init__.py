"""Real hosts for tests: containers that boot systemd, run sshd, and can run their own dockerd."""

from tests.testbed.bed import (
    TestBed,
    TestHost,
    ensure_docker_host_image,
    ensure_image,
    kernel_has_esp,
)

__all__ = ["TestBed", "TestHost", "ensure_docker_host_image", "ensure_image", "kernel_has_esp"]

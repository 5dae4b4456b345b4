"""The provisioned three-host fleet the training tests share (booted once per session;
tests that break a host put it back before they end)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.testbed import TestBed, ensure_docker_host_image
from tests.testbed.bed import ensure_ubuntu_image
from tests.testbed.drfc_run import provisioned, write_drfc
from tests.testbed.images import ensure_analysis_standin, ensure_metrics_standins, ensure_standin


@pytest.fixture(scope="session", autouse=True)
def images_built_ahead() -> Iterator[None]:
    """The slow builds (debootstrap of the Ubuntu roots and of the stand-ins' Debian root)
    start in the background with the first test-bed test, so the tests that come first run
    while they build. A later caller waits on the same lock rather than building twice; a
    build that fails here is tried again by the test that needs it, which then says why."""
    steps: list[Callable[[], object]] = [
        lambda: ensure_ubuntu_image("24.04"),
        lambda: ensure_ubuntu_image("22.04"),
        ensure_standin,
        ensure_metrics_standins,
        ensure_analysis_standin,
    ]

    def build() -> None:
        for step in steps:
            with contextlib.suppress(Exception):  # said again by the test that needs it
                step()

    threading.Thread(target=build, name="images-ahead", daemon=True).start()
    yield


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestBed, Path]]:
    ensure_standin()
    ensure_metrics_standins()  # provision puts them on the trainer: DR_TELEGRAF_HOST below
    ensure_analysis_standin()  # log-analysis copies it to the trainer from here
    image = ensure_docker_host_image(tmp_path_factory.mktemp("bake"))
    env_dir = write_drfc(
        tmp_path_factory.mktemp("drfc"),
        5,
        {2: "Monaco", 3: "Bowtie_track", 4: "Monaco", 5: "Bowtie_track"},
        10,
    )
    scripts = env_dir / "scripts"  # DR_ROBOMAKER_MOUNT_SCRIPTS_DIR, shipped to every host
    scripts.mkdir()
    (scripts / "alter_environment_1.sh").write_text('echo "altered for worker $ROLLOUT_IDX"\n')
    with (env_dir / "system.env").open("a") as fh:
        fh.write("DR_ROBOMAKER_MOUNT_SCRIPTS_DIR=scripts\n")
        # the metrics stack, as DRfC's template has it commented out (drfleet metrics)
        fh.write("DR_TELEGRAF_HOST=telegraf\nDR_TELEGRAF_PORT=8092\n")
        # the workers' ros logs on their hosts, which log-analysis collects
        fh.write("DR_ROBOMAKER_MOUNT_LOGS=True\n")
    with (env_dir / "run.env").open("a") as fh:
        fh.write("DR_TRAIN_RTF=1.5\n")  # run.sh writes it into each worker's world file
    with TestBed(3, tmp_path_factory.mktemp("fleet"), image=image) as bed:
        provisioned(bed, env_dir)
        yield bed, env_dir

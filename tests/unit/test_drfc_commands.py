"""docs/drfc-commands.md names every command DRfC defines, and only drfleet commands (and
flags) that exist."""

from __future__ import annotations

import re

from tests.conftest import REPO

DOC = REPO / "docs" / "drfc-commands.md"
# the functions and aliases of DRfC 2eb1a1f's bin/activate.sh, bin/scripts_wrapper.sh,
# bin/module/droa.sh and bin/module/summary.sh (their names only)
DRFC = {
    "dr-download-custom-files", "dr-download-model", "dr-find-robomaker", "dr-find-sagemaker",
    "dr-get-robomaker-stats", "dr-increment-training", "dr-increment-upload-model",
    "dr-list-aws-models", "dr-logs-loganalysis", "dr-logs-robomaker", "dr-logs-sagemaker",
    "dr-set-upload-model", "dr-start-evaluation", "dr-start-loganalysis", "dr-start-metrics",
    "dr-start-tournament", "dr-start-training", "dr-start-viewer", "dr-stop-all",
    "dr-stop-evaluation", "dr-stop-loganalysis", "dr-stop-metrics", "dr-stop-training",
    "dr-stop-viewer", "dr-update-viewer", "dr-upload-car-zip", "dr-upload-custom-files",
    "dr-upload-model", "dr-url-loganalysis", "dr-view-stream", "dr-update-env", "dr-update",
    "dr-reload", "dr-local-aws", "dr-summary", "droa-list-models", "droa-get-model",
    "droa-download-logs", "droa-delete-model", "droa-import-model",
}  # fmt: skip


def rows() -> list[tuple[str, str]]:
    out = []
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`d"):
            out.append((cells[0], cells[1]))
    return out


def test_every_drfc_command_has_a_row() -> None:
    named = {n for drfc, _ in rows() for n in re.findall(r"`(dr[\w-]+)`", drfc)}
    assert named == DRFC


def test_every_drfleet_command_and_flag_in_the_table_exists() -> None:
    from drfleet.commandline.cli import ns

    tasks = {name.replace("_", "-"): t for name, t in ns.tasks.items()}
    for _, ours in rows():
        for call in re.findall(r"`drfleet ([^`]+)`", ours):
            name, *args = call.split()
            assert name in tasks, call
            task = tasks[name]  # its parameters (get_arguments would use up its help)
            flags = {"--" + n.replace("_", "-") for n in task.argspec(task.body).parameters}
            for arg in args:
                if arg.startswith("--"):
                    assert arg.split("=")[0] in flags, (call, sorted(flags))


def test_the_docs_link_only_to_files_this_repository_has() -> None:
    missing = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)", page.read_text()):
            if (
                not target.startswith(("http://", "https://"))
                and not (page.parent / target).exists()
            ):
                missing.append(f"{page.name}: {target}")
    assert not missing

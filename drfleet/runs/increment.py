"""DRfC's `dr-increment-training` (scripts/training/increment.sh) and the prefix numbering of
`dr-increment-upload-model` (scripts/upload/increment.sh), as pure functions over run.env's
text."""

from __future__ import annotations

import re

from drfleet.errors import DrfleetError


def next_prefix(current: str, delim: str = "-") -> str:
    """my-model-3 -> my-model-4; my-model -> my-model-1 (a numeric suffix after delim is
    incremented, else delim and 1 are appended). DRfC's awk test matches any suffix, so it
    turns rl-deepracer-sagemaker into rl-deepracer-1: drfleet appends (drfc-differences.md)."""
    if not current:
        raise DrfleetError("the current model prefix is empty: nothing to increment from")
    if not delim:
        raise DrfleetError("the delimiter is empty", fix="--delim - (DRfC's default)")
    head, sep, tail = current.rpartition(delim)
    if sep and tail.isascii() and tail.isdigit():
        return f"{head}{delim}{int(tail) + 1}"
    return f"{current}{delim}1"


def rewrite(text: str, changes: dict[str, str]) -> str:
    """run.env's text with each KEY=value line of changes set to the new value, every other
    byte kept; a key the file lacks is added at the end (DRfC's sed would skip it, and the
    setting would silently keep its default)."""
    lines = text.splitlines(keepends=True)
    seen: set[str] = set()
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*(?:export\s+)?)([A-Za-z_][A-Za-z0-9_]*)=", line)
        if m and m.group(2) in changes:
            end = "\n" if line.endswith("\n") else ""
            lines[i] = f"{m.group(1)}{m.group(2)}={changes[m.group(2)]}{end}"
            seen.add(m.group(2))
    out = "".join(lines)
    missing = [k for k in changes if k not in seen]
    if missing and out and not out.endswith("\n"):
        out += "\n"
    return out + "".join(f"{k}={changes[k]}\n" for k in missing)


def training_changes(
    current: str, new: str | None, delim: str, checkpoint: str | None
) -> dict[str, str]:
    """What dr-increment-training sets: the new model prefix, and the current one as the
    pretrained model (with --checkpoint, which of its checkpoints to start from)."""
    target = new or next_prefix(current, delim)
    if target == current:
        raise DrfleetError(f"the new prefix equals the current one ({current})")
    changes = {
        "DR_LOCAL_S3_PRETRAINED_PREFIX": current,
        "DR_LOCAL_S3_PRETRAINED": "True",
        "DR_LOCAL_S3_MODEL_PREFIX": target,
    }
    if checkpoint:
        if checkpoint not in ("best", "last"):
            raise DrfleetError(f"--checkpoint {checkpoint!r}: best or last")
        changes["DR_LOCAL_S3_PRETRAINED_CHECKPOINT"] = checkpoint
    return changes

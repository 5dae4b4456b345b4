"""bench/RESULTS.md holds one section per benchmark; each run replaces its own section."""

from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = "# Benchmark results\n\nEach section is rewritten by the script named in it.\n"


def machine() -> str:
    return (
        f"{platform.node()}: {os.cpu_count()} vCPUs, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def write_section(name: str, body: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    section = f"<!-- {name} -->\n{body.rstrip()}\n<!-- /{name} -->\n"
    pattern = re.compile(rf"<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->\n", re.S)
    text = pattern.sub(lambda _m: section, text) if pattern.search(text) else text + "\n" + section
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(RESULTS)


def publish(name: str, title: str, lines: list[str]) -> None:
    """Writes bench/bench_<name>.py's section (title, this machine, then lines) into
    RESULTS.md and prints it."""
    body = "\n".join([f"## {title} (bench/bench_{name}.py)", "", machine(), "", *lines])
    write_section(name, body)
    print(body)

"""`drfleet-agent`: run | apply | status | logs (built in issue 4)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    sys.stderr.write("drfleet-agent: not built yet (issue 4)\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())

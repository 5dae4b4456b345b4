"""DRfC's env files (system.env, run.env, worker-N.env), read the way bash would source them,
without running anything: comments, blank lines, `export`, single and double quotes, `=`
inside values, and `$VAR` / `${VAR}` references to keys defined earlier (or in a base file).
A line that is none of these is an error naming the file and line."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from drfleet.errors import ConfigError

_KEY = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_REF = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
MAX_BYTES = 1 << 20


@dataclass
class EnvFile:
    path: str
    values: dict[str, str] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def get(self, key: str, default: str = "") -> str:
        return self.values.get(key, default)

    def where(self, key: str) -> str:
        return f"{self.path}:{self.lines[key]}" if key in self.lines else self.path


def parse(text: str, path: str, base: dict[str, str] | None = None) -> EnvFile:
    env = EnvFile(path)
    scope = dict(base or {})
    # bash ends a line at \n only (str.splitlines would also split on form feed, U+2028 ...);
    # a CRLF file is forgiven
    for n, raw in enumerate(text.split("\n"), 1):
        raw = raw.removesuffix("\r")
        line = raw.strip(" \t")
        if not line or line.startswith("#"):
            continue
        m = _KEY.match(line)
        if not m:
            raise ConfigError(
                f"cannot read this line: {raw.strip()[:80]!r}",
                where=f"{path}:{n}",
                fix="write KEY=value (a comment starts with #)",
            )
        key, rest = m.group(1), m.group(2)
        try:
            value = _value(rest, scope, env, f"{path}:{n}")
        except ValueError as exc:
            raise ConfigError(
                str(exc), where=f"{path}:{n}", fix="close the quote, or quote the whole value"
            ) from None
        if key in env.lines:
            env.warnings.append(
                f"{path}:{n}: {key} is set again (first at line "
                f"{env.lines[key]}); the last one wins, as in bash"
            )
        env.values[key] = value
        env.lines[key] = n
        scope[key] = value
    return env


def _value(rest: str, scope: dict[str, str], env: EnvFile, where: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(rest):
        c = rest[i]
        if c == "'":
            end = rest.find("'", i + 1)
            if end < 0:
                raise ValueError("unclosed single quote")
            out.append(rest[i + 1 : end])
            i = end + 1
        elif c == '"':
            j, buf = i + 1, []
            while j < len(rest) and rest[j] != '"':
                if rest[j] == "\\" and j + 1 < len(rest) and rest[j + 1] in '"\\$`':
                    buf.append(rest[j + 1])
                    j += 2
                    continue
                buf.append(rest[j])
                j += 1
            if j >= len(rest):
                raise ValueError("unclosed double quote")
            out.append(_expand("".join(buf), scope, env, where))
            i = j + 1
        elif c in " \t":
            tail = rest[i:].strip()
            if tail and not tail.startswith("#"):
                raise ValueError(f"unquoted space in the value before {tail[:20]!r}")
            break
        else:
            j = i
            while j < len(rest) and rest[j] not in "'\" \t":
                j += 1
            out.append(_expand(rest[i:j], scope, env, where))
            i = j
    return "".join(out)


def _expand(text: str, scope: dict[str, str], env: EnvFile, where: str) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in scope:
            env.warnings.append(
                f"{where}: ${name} is not defined before this line; it reads as empty, as in bash"
            )
            return ""
        return scope[name]

    return _REF.sub(sub, text)


def load(path: str | Path, base: dict[str, str] | None = None) -> EnvFile:
    p = Path(path)
    try:
        with p.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)  # never more: a huge file is refused, not loaded
    except FileNotFoundError:
        raise ConfigError("file not found", where=str(p)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", where=str(p)) from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(
            f"more than {MAX_BYTES} bytes: too large for an env file",
            where=str(p),
            fix="an env file holds KEY=value lines; is this the right file?",
        )
    if NUL in raw:
        raise ConfigError(
            "binary data (NUL byte) in an env file",
            where=f"{p}:{_line_at(raw, raw.index(NUL))}",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("not UTF-8 text", where=f"{p}:{_line_at(raw, exc.start)}") from None
    return parse(text, str(p), base)


NUL = b"\x00"


def _line_at(raw: bytes, offset: int) -> int:
    return raw[:offset].count(b"\n") + 1

"""YAML loading that remembers where things are, so errors can name the file and line.

Mappings load as `Located` dicts that know the line of each key; duplicate keys are an error
(PyYAML silently keeps the last one, which hides mistakes in hand-written inventories).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from drfleet.errors import ConfigError


class Located(dict[str, Any]):
    """A mapping from a YAML file, with the 1-based line of itself and of each key."""

    line: int = 0
    key_lines: dict[str, int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_lines = {}

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> Located:
    loader.flatten_mapping(node)
    out = Located()
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            key = str(key)
        line = key_node.start_mark.line + 1
        if key in out:
            raise ConfigError(
                f"duplicate key {key!r} (first at line {out.key_lines[key]})",
                where=f"{loader.name}:{line}",
                fix="keep one of them",
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = line
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_text(text: str, name: str) -> Any:
    """Parses YAML text; `name` is used in messages (normally the file's path)."""
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise ConfigError(
            f"character {exc.character!r} is not allowed in YAML",
            where=f"{name}:{line}",
            fix="remove it; a config file is plain text",
        ) from None
    loader.name = name
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}" if mark else name
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(
            f"YAML syntax error: {problem}",
            where=where,
            fix="correct the YAML at that line (indentation, colons, quotes)",
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", where=name) from None
    finally:
        loader.dispose()


MAX_BYTES = 4 * 1024 * 1024


def load_file(path: Path) -> Any:
    """Reads and parses a YAML file, with a clear error when it is missing or unreadable."""
    return load_text(read_text(path), str(path))


def read_text(path: Path) -> str:
    """A config file's text: missing, too big, unreadable, not UTF-8 or binary is an error."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(
                f"file is {size} bytes; more than {MAX_BYTES} is not a config file", where=str(path)
            )
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("file not found", where=str(path)) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a file", where=str(path)) from None
    except PermissionError:
        raise ConfigError("permission denied", where=str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError("not UTF-8 text", where=f"{path}:{line}") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ConfigError("binary data (NUL byte) in a config file", where=f"{path}:{line}")
    return text

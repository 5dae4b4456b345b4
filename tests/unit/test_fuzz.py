"""Hostile and broken input, fuzzed: every parser answers with its own clear error (naming
file and line where there is one) or a result, never a traceback."""

from __future__ import annotations

import contextlib
import json
import shlex
import string
from pathlib import Path

import pytest
from drfleet_agent.spec import SpecError, parse
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from drfleet import yamlsrc
from drfleet.drfc import envfile
from drfleet.errors import ConfigError
from drfleet.hosts import inventory

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NASTY = st.sampled_from(
    [
        "$(touch /tmp/pwned)",
        "`id`",
        ";",
        "'",
        '"',
        "\\",
        "\n",
        "=",
        "#",
        "${X}",
        "$X",
        "\x00",
        "\xff",
        " ",
        "{{ x }}",
        "%s",
        "../",
    ]
)
TEXT = st.lists(st.one_of(st.text(max_size=20), NASTY), max_size=12).map("".join)


@FAST
@given(TEXT)
def test_env_files_parse_or_name_the_line(text: str) -> None:
    try:
        env = envfile.parse(text, "run.env")
    except ConfigError as exc:
        assert exc.message.startswith("run.env:")
        return
    for key, value in env.values.items():
        assert key.isidentifier() and isinstance(value, str)


@FAST
@given(st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True), TEXT, max_size=6))
@example({"A": 'it\'s $(touch /tmp/pwned) `id` "q" \\ ;|&', "B": "'", "C": '"'})
def test_quoted_values_come_back_literally(values: dict[str, str]) -> None:
    """Any value, quotes of both kinds, `$( )` and backticks included, written as bash
    quotes it (shlex.quote: '...' with each ' as '"'"'), reads back as itself. Only a line
    break or NUL is left out: an env file holds one setting a line."""
    clean = {k: v for k, v in values.items() if "\x00" not in v and "\n" not in v and "\r" not in v}
    text = "".join(f"{k}={shlex.quote(v)}\n" for k, v in clean.items())
    assert envfile.parse(text, "system.env").values == clean  # nothing expands, nothing runs


@FAST
@given(TEXT)
def test_inventory_yaml_never_tracebacks(text: str) -> None:
    try:
        inventory.parse(yamlsrc.load_text(text, "inv.yml"), "inv.yml")
    except ConfigError as exc:
        assert exc.message.startswith("inv.yml")


HOSTS = st.dictionaries(
    st.one_of(st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), NASTY),
    st.one_of(
        st.none(),
        st.dictionaries(
            st.sampled_from(
                [
                    "address",
                    "ssh_port",
                    "roles",
                    "ssh_user",
                    "become",
                    "vcpus",
                    "proxy_jump",
                    "bogus",
                ]
            ),
            st.one_of(st.integers(-5, 70000), TEXT, st.booleans(), st.lists(TEXT, max_size=3)),
            max_size=4,
        ),
    ),
    min_size=1,
    max_size=4,
)


@FAST
@given(HOSTS)
def test_inventory_structures_are_checked(hosts: dict[str, object]) -> None:
    text = json.dumps({"all": {"hosts": hosts}})  # JSON is YAML
    try:
        inv = inventory.parse(yamlsrc.load_text(text, "inv.yml"), "inv.yml")
    except ConfigError as exc:
        assert exc.message.startswith("inv.yml")
        return
    for h in inv.hosts.values():  # what passed is safe to hand to a shell or to SSH
        assert set(h.name) <= set(string.ascii_letters + string.digits + "._-")
        assert set(h.address) <= set(string.ascii_letters + string.digits + "._:%-")
        assert 1 <= h.ssh_port <= 65535


SPEC = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True), TEXT),
        "image": TEXT,
        "command": st.lists(TEXT, max_size=3),
        "env": st.dictionaries(TEXT, TEXT, max_size=3),
        "ports": st.dictionaries(TEXT, st.one_of(st.integers(-1, 70000), st.none()), max_size=2),
        "mounts": st.lists(
            st.dictionaries(st.sampled_from(["source", "target", "read_only"]), TEXT), max_size=2
        ),
        "restart": TEXT,
        "gpus": st.one_of(st.integers(-3, 3), st.lists(TEXT, max_size=2)),
        "bogus": TEXT,
    },
)


@FAST
@given(st.lists(SPEC, max_size=3), st.one_of(st.integers(-2, 10), TEXT))
def test_desired_state_is_refused_clearly_or_accepted(
    specs: list[dict[str, object]], generation: object
) -> None:
    doc = json.dumps({"fleet": "f", "run_id": "0", "generation": generation, "containers": specs})
    try:
        state = parse(doc)
    except SpecError as exc:
        assert str(exc)
        return
    for c in state.containers:
        assert c.name and c.image and c.restart in ("always", "on-failure", "never")


@FAST
@given(st.binary(max_size=200))
def test_binary_junk(data: bytes) -> None:
    with contextlib.suppress(SpecError):
        parse(data)
    try:
        envfile.parse(data.decode("utf-8", "replace"), "worker-2.env")
    except ConfigError as exc:
        assert exc.message.startswith("worker-2.env:")


def test_huge_files_are_refused_without_being_loaded(tmp_path: Path) -> None:
    """A sparse 4 GiB file: refused by size, and never read whole (that would take seconds
    and gigabytes)."""
    huge = tmp_path / "run.env"
    with huge.open("wb") as fh:
        fh.truncate(4 << 30)
    with pytest.raises(ConfigError) as err:
        envfile.load(huge)
    assert err.value.where == str(huge) and "too large for an env file" in err.value.message
    inv = tmp_path / "inventory.yml"
    inv.write_bytes(b"all:\n  hosts:\n" + b"    # padding\n" * (1 << 19))
    with pytest.raises(ConfigError) as err:
        yamlsrc.load_file(inv)
    assert err.value.where == str(inv) and "is not a config file" in err.value.message
    with pytest.raises(SpecError, match="the limit is"):
        parse(b" " * (9 << 20))

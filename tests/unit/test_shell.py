import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from drfleet.errors import ConfigError
from drfleet.playbook import loader, templating
from drfleet.playbook.modules.system import shell_line
from drfleet.shell import Raw, Secret, cmd, join, sh


def test_every_value_is_quoted() -> None:
    c = cmd("echo", "$(touch /tmp/pwned)", "`id`", "a;b", "it's")
    assert shlex.split(c.render()) == ["echo", "$(touch /tmp/pwned)", "`id`", "a;b", "it's"]


def test_secrets_are_masked_in_display_only() -> None:
    c = cmd("login", "--password", Secret("hunter2"))
    assert "hunter2" in c.render()
    assert (
        "hunter2" not in c.display()
        and "hunter2" not in str(c)
        and "hunter2" not in repr(Secret("hunter2"))
    )
    assert c.has_secret


def test_nested_command_is_one_argument_and_keeps_mask() -> None:
    inner = join([cmd("echo", Secret("s3cr3t")), cmd("true")])
    outer = cmd(Raw("sudo -n --"), *sh(inner).parts)
    assert shlex.split(outer.render())[-1] == "echo s3cr3t && true"
    assert "s3cr3t" not in outer.display()
    assert outer.has_secret


def test_raw_is_literal() -> None:
    assert cmd("ls", Raw("|"), "wc").render() == "ls | wc"


HOSTILE = "$(touch {p}) `touch {p}` ; touch {p} ' \" \\ $HOME *"


def _run_line(template: str, x: str) -> str:
    """A shell task's line as drfleet runs it: rendered, then through the command module."""
    line = templating.render(template, {"x": x}, "book.yml:3", shell=True)
    assert x not in line  # the value is never in the line's text
    command = shell_line(line)
    return subprocess.run(
        ["sh", "-c", command.render()], capture_output=True, text=True, check=True, cwd="/"
    ).stdout


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("echo {{ x }}", "{x}\n"),
        ("printf '%s|' {{ x }} {{ x | quote }}", "{x}|{x}|"),  # one word, as | quote is
        ('echo "pre {{ x }} post"', "pre {x} post\n"),
        ('test -n {{ x }} && echo "it\'s {{ x }}"', "it's {x}\n"),
        # the walk-arounds of the old guard, each of which ran the value under sh -c
        ("cat <<EOF\n{{ x }}\nEOF", "{x}\n"),
        ("cat <<-EOF\n\t{{ x }}\n\tEOF\necho {{ x }}", "{x}\n{x}\n"),
        ("{# ' #}echo {{ x }}", "{x}\n"),
        ("# it's a note\necho {{ x }}", "{x}\n"),
        ('echo "$(printf %s {{ x }})"', "{x}\n"),
        ('echo "`printf %s {{ x }}`"', "{x}\n"),
        ("{% for i in [1, 2] %}echo {{ i }} {{ x }};{% endfor %}", "1 {x}\n2 {x}\n"),
        ("{% set y = x ~ '!' %}echo {{ y }}", "{x}!\n"),
    ],
)
def test_no_placement_of_a_value_in_a_shell_line_runs_it(
    tmp_path: Path, template: str, expected: str
) -> None:
    pwned = tmp_path / "pwned"
    x = HOSTILE.format(p=pwned)
    assert _run_line(template, x) == expected.replace("{x}", x)
    assert not pwned.exists()


@pytest.mark.parametrize(
    ("shell", "says"),
    [
        ("echo '{{ x }}'", "inside single quotes"),
        ("{# ' #}echo '{{ x }}'", "inside single quotes"),  # a Jinja comment fools no one
        ("echo $'a{{ x }}'", "inside single quotes"),
        ("cat <<'EOF'\n{{ x }}\nEOF", "delimiter is quoted"),
        ('cat <<"EOF"\n{{ x }}\nEOF', "delimiter is quoted"),
        ("echo $(( {{ x }} + 1 ))", "arithmetic"),
        ("{% filter replace('a', x) %}a{% endfilter %}", "filterblock"),
        ("{% macro m() %}{{ x }}{% endmacro %}{{ m() }}", "macro"),
        ("{% set y %}{{ x }}{% endset %}echo {{ y }}", "assignblock"),
    ],
)
def test_a_shell_line_that_would_not_pass_a_value_as_data_is_refused_at_load(
    tmp_path: Path, shell: str, says: str
) -> None:
    """Refused with file and line before any host is touched: where the shell expands
    nothing, where it would evaluate the value, and Jinja that could put a value into the
    text without {{ }}."""
    book = tmp_path / "book.yml"
    for key in ("shell", "unless"):
        task = {"name": "t", "command": {"shell": "true", key: shell}}
        book.write_text(yaml.safe_dump([{"hosts": "all", "tasks": [task]}]))
        with pytest.raises(ConfigError) as exc:
            loader.load(str(book))
        assert f"{book}:3: task 't': {key}" in exc.value.message
        assert says in exc.value.message, exc.value.message


def test_a_line_without_values_runs_as_written() -> None:
    line = templating.render("echo 'plain' && true", {}, "w", shell=True)
    assert shell_line(line).render() == "echo 'plain' && true"

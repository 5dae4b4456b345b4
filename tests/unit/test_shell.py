import shlex

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


def test_a_placeholder_inside_quotes_in_a_shell_task_is_refused_at_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`'{{ x }}'` renders to `''$(id)''` (the quotes cancel drfleet's own): refused with file
    and line before any host is touched; unquoted, the same value is one literal word."""
    import subprocess

    import pytest

    from drfleet.errors import ConfigError
    from drfleet.playbook import loader, templating

    for shell in ("echo '{{ x }}'", 'echo "{{ x }}"', 'test -n {{ x }} && echo "it\'s {{ x }}"'):
        book = tmp_path / "book.yml"
        task = {"name": "t", "command": {"shell": shell}}
        import yaml

        book.write_text(yaml.safe_dump([{"hosts": "all", "tasks": [task]}]))
        with pytest.raises(ConfigError) as exc:
            loader.load(str(book))
        assert f"{book}:" in exc.value.message and "inside quotes" in exc.value.message
    safe = templating.render("echo {{ x }}", {"x": "$(id) `id` ' \""}, "w", shell=True)
    out = subprocess.run(["sh", "-c", safe], capture_output=True, text=True, check=True).stdout
    assert out == "$(id) `id` ' \"\n"

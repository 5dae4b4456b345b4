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

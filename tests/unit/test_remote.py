import io
import threading
import time

import pytest

from drfleet.errors import DrfleetError
from drfleet.hosts.inventory import Host
from drfleet.hosts.remote import (
    LocalSession,
    Options,
    PrefixWriter,
    SSHSession,
    Unreachable,
    fan_out,
    parse_jump,
)
from drfleet.shell import Secret, cmd


def hosts(n: int) -> list[Host]:
    return [Host(name=f"h{i}", address=f"10.0.0.{i}") for i in range(1, n + 1)]


def test_one_failure_does_not_stop_the_others() -> None:
    def fn(h: Host) -> str:
        if h.name == "h2":
            raise Unreachable("down", where=h.name)
        if h.name == "h3":
            raise RuntimeError("bug")
        return h.name.upper()

    out = fan_out(hosts(4), fn)
    assert [o.host.name for o in out] == ["h1", "h2", "h3", "h4"]
    assert [o.value for o in out] == ["H1", None, None, "H4"]
    assert out[1].unreachable and not out[2].unreachable
    assert "internal error: RuntimeError: bug" in out[2].error.message  # type: ignore[union-attr]


def test_concurrency_is_bounded() -> None:
    running, peak, lock = 0, 0, threading.Lock()

    def fn(h: Host) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    fan_out(hosts(12), fn, limit=4)
    assert peak == 4


def test_prefix_writer_keeps_lines_whole() -> None:
    out = io.StringIO()
    w = PrefixWriter("h1", out)
    w.write("par")
    w.write("tial\nsecond\nthi")
    assert out.getvalue() == "h1 | partial\nh1 | second\n"
    w.flush()
    assert out.getvalue().endswith("h1 | thi\n")


def test_local_session_streams_prefixed_output_and_masks_secrets() -> None:
    out = io.StringIO()
    host = Host(name="me", address="localhost", connection="local")
    with LocalSession(host, Options(stream=out)) as s:
        res = s.run(cmd("echo", Secret("hunter2")))
        assert res.stdout == "***\n" and res.command == "echo '***'"
        assert out.getvalue() == "me | ***\n"
        token = s.run(cmd("echo", "SWMTKN-1-abc"), prints_secret=True)
        assert token.stdout == "SWMTKN-1-abc\n" and "SWMTKN" not in out.getvalue()
        with pytest.raises(DrfleetError) as exc:  # a program that echoes its secret and fails
            s.run(cmd("sh", "-c", 'echo "bad key $1" >&2; exit 1', "sh", Secret("hunter2")))
    assert "hunter2" not in str(exc.value) and "bad key ***" in str(exc.value)
    assert "hunter2" not in out.getvalue()


def test_failed_command_names_host_command_status_and_stderr() -> None:
    host = Host(name="me", address="localhost", connection="local")
    with pytest.raises(DrfleetError) as exc:
        LocalSession(host).run(cmd("sh", "-c", "echo boom >&2; exit 3"), task="demo")
    msg = exc.value.message
    assert msg.startswith("me: task 'demo': `sh -c 'echo boom >&2; exit 3'` exited with status 3")
    assert "boom" in msg


def test_parse_jump() -> None:
    assert parse_jump("bastion") == (None, "bastion", 22)
    assert parse_jump("ec2-user@10.0.0.1:2222") == ("ec2-user", "10.0.0.1", 2222)
    assert parse_jump("u@[fe80::1]:22") == ("u", "fe80::1", 22)


@pytest.mark.parametrize(
    "config",
    [
        "Host *\n  ProxyJump none\n",
        "Host 10.0.0.5\n  ProxyJump none\nHost *\n  ProxyJump bastion\n",
    ],
)
def test_proxyjump_none_means_no_jump(tmp_path, monkeypatch, config: str) -> None:  # type: ignore[no-untyped-def]
    """ssh reads `ProxyJump none` as no jump; Fabric, handed None, built a gateway to a host
    named "none" whose key nobody checked."""
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text(config)
    monkeypatch.setenv("HOME", str(tmp_path))
    s = SSHSession(Host("w1", address="10.0.0.5"))
    conn = s._make("10.0.0.5", 22, "fleet", "w1")
    assert conn.gateway is False and s.hops == []


def test_a_jump_host_whose_own_proxyjump_is_none_is_reached_directly(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text(
        "Host bastion\n  ProxyJump none\nHost *\n  ProxyJump fleet@bastion:2200\n"
    )
    monkeypatch.setenv("HOME", str(tmp_path))
    s = SSHSession(Host("w1", address="10.0.0.5"))
    conn = s._make("10.0.0.5", 22, "fleet", "w1")
    assert [h.host for h in s.hops] == ["bastion"] and conn.gateway is s.hops[0]
    assert s.hops[0].gateway is False and s.hops[0].port == 2200
    for c in (conn, s.hops[0]):  # every hop checked by drfleet's policy, not Fabric's
        assert type(c.client._policy).__name__ == "_Policy"


def test_a_name_that_does_not_resolve_is_said_so_not_a_closed_port(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import socket

    def no_name(*_a: object, **_k: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_name)
    s = SSHSession(Host("h1", address="fleet-h1.example"), Options(connect_retries=2))
    with pytest.raises(Unreachable) as exc:
        s.open()
    msg = exc.value.message
    assert "its name 'fleet-h1.example' does not resolve" in msg and "port" not in msg
    assert "check the host's address in the inventory" in msg


def test_a_missing_ssh_key_file_is_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = SSHSession(Host("h1", address="127.0.0.1", ssh_key=str(tmp_path / "fleet_key")))
    with pytest.raises(DrfleetError) as exc:
        s.open()
    assert f"ssh_key {tmp_path / 'fleet_key'} is not a file on this machine" in exc.value.message


def test_each_connect_retry_is_said_on_the_hosts_line() -> None:
    """A closed port (127.0.0.1:1): each retry reaches the progress board, not only the end."""
    said: list[tuple[str, str]] = []
    opts = Options(connect_retries=2, notice=lambda h, t: said.append((h, t)))
    s = SSHSession(Host("h1", address="127.0.0.1", ssh_port=1), opts)
    with pytest.raises(Unreachable, match="tried 3 times"):
        s.open()
    assert [h for h, _ in said] == ["h1", "h1"]
    assert said[0][1].endswith("trying again (2 of 3)") and "refused" in said[0][1]
    assert said[1][1].endswith("trying again (3 of 3)")

"""Running commands on hosts: one session per host (SSH through Fabric, or local), and a
bounded parallel fan-out that returns an outcome per host and never lets one host's failure
stop the others."""

from __future__ import annotations

import codecs
import contextlib
import io
import logging
import os
import select
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any, Generic, TypeVar

import paramiko
from fabric import Config, Connection

from drfleet.errors import DrfleetError, HostKeyError
from drfleet.hosts.hostkeys import KnownHosts
from drfleet.hosts.inventory import Host
from drfleet.shell import Command, Raw, cmd, mask, sh

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_LIMIT = 32
MAX_HOPS = 8  # ProxyJump hops ssh_config may chain
PASSWORD_ENV = "DRFLEET_BECOME_PASSWORD"  # noqa: S105 (a variable name, not a password)
SUDO_REFUSED = ("incorrect password attempt", "Sorry, try again")


class Unreachable(DrfleetError):
    """The host could not be reached (down, no route, port closed, timed out)."""


class RemoteCommandError(DrfleetError):
    """A command ran and failed; the message names host, command, exit status, stderr tail."""


@dataclass(frozen=True)
class Options:
    known_hosts: str | None = None  # overrides the inventory's known_hosts
    accept_new_host_keys: bool = False
    connect_retries: int = 2
    limit: int = DEFAULT_LIMIT
    connect_timeout: float | None = None  # caps each host's own connect_timeout (status)
    stream: IO[str] | None = None  # where live output goes, prefixed with the host name
    # told (host name, what) of each connect retry, so a progress line says it is retrying
    notice: Callable[[str, str], None] | None = None


@dataclass(frozen=True)
class Result:
    host: str
    command: str  # as displayed: secrets masked
    exit_code: int
    stdout: str
    stderr: str
    elapsed: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def tail(self, lines: int = 8) -> str:
        text = self.stderr.strip() or self.stdout.strip()
        return "\n".join(text.splitlines()[-lines:])

    def error(self, task: str | None = None) -> RemoteCommandError:
        what = f"`{self.command}` exited with status {self.exit_code}"
        if task:
            what = f"task {task!r}: {what}"
        tail = self.tail()
        if tail:
            what += "\n    " + tail.replace("\n", "\n    ")
        return RemoteCommandError(what, where=self.host)


class PrefixWriter(io.TextIOBase):
    """Writes complete lines to a stream as `host | line`, so parallel output stays legible."""

    _lock = threading.Lock()

    def __init__(self, host: str, target: IO[str], hide: tuple[str, ...] = ()) -> None:
        self.host = host
        self.target = target
        self.hide = hide  # secret values of the command: masked in every line
        self.buffer_ = ""

    def write(self, text: str) -> int:
        self.buffer_ += text
        *lines, self.buffer_ = self.buffer_.split("\n")
        if lines:
            with self._lock:
                for line in lines:
                    self.target.write(f"{self.host} | {mask(line, self.hide)}\n")
                self.target.flush()
        return len(text)

    def flush(self) -> None:
        if self.buffer_:
            self.write("\n")


class Session:
    """Commands on one host. Use as a context manager; `run` opens the connection lazily."""

    def __init__(self, host: Host, options: Options | None = None) -> None:
        self.host = host
        self.options = options or Options()
        self._sudo_password: bool | None = None  # whether sudo here wants the password
        self._hide: tuple[str, ...] = ()  # the running command's secrets, masked in its output
        self._quiet = False  # the running command prints a secret: no live echo
        self._lines: Callable[[str], None] | None = None  # the running command's stdout lines

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    @property
    def is_root(self) -> bool:
        raise NotImplementedError

    @property
    def sudo_wants_password(self) -> bool:
        """Whether sudo here asked for the password (known once a become command ran)."""
        return bool(self._sudo_password)

    def host_key(self) -> tuple[str, str] | None:
        """The host's key as this session verified it (type, base64); None without SSH."""
        return None

    @property
    def password_env(self) -> str:
        return self.host.become_password_env or PASSWORD_ENV

    def prepare(self, command: Command, become: bool | None, stdin: Stdin) -> tuple[Command, Stdin]:
        """Adds sudo when the host says `become` and we are not root already. With a sudo
        password (from the environment, never a file or a command line), sudo reads it as the
        first line of stdin, and the command gets the rest; `-k` makes sudo ask every time,
        so the line is never left over for the command. Hosts whose sudo needs no password
        (asked once per session) never get it."""
        if not (self.host.become if become is None else become) or self.is_root:
            return command, stdin
        if self._sudo_password is None:
            self._sudo_password = bool(os.environ.get(self.password_env)) and (
                self._exec("sudo -k -n true", None, 60)[0] != 0
            )
        if not self._sudo_password:
            return cmd(Raw("sudo -n -H --"), *sh(command).parts), stdin
        line = (os.environ.get(self.password_env, "") + "\n").encode()
        return cmd(Raw("sudo -S -k -p '' -H --"), *sh(command).parts), _prefixed(line, stdin)

    def run(
        self,
        command: Command,
        *,
        stdin: Stdin = None,
        timeout: float | None = None,
        become: bool | None = None,
        check: bool = True,
        task: str | None = None,
        prints_secret: bool = False,
        lines: Callable[[str], None] | None = None,
    ) -> Result:
        """Runs command. Its Secret values are masked in its output, live and in the Result;
        prints_secret: its output is one (a token): never echoed live, and not masked.
        lines: called with each line of its stdout as it comes (a progress report)."""
        wrapped, stdin = self.prepare(command, become, stdin)
        started = time.monotonic()
        self._hide, self._quiet, self._lines = command.secrets(), prints_secret, lines
        try:
            code, out, err = self._exec(wrapped.render(), stdin, timeout)
        finally:
            hide, self._hide, self._quiet, self._lines = self._hide, (), False, None
        result = Result(
            self.host.name,
            command.display(),
            code,
            mask(out, hide),
            mask(err, hide),
            time.monotonic() - started,
        )
        if code != 0 and wrapped is not command:
            self._sudo_failed(command, err)
        if check and code != 0:
            raise result.error(task)
        return result

    def _sudo_failed(self, command: Command, err: str) -> None:
        if "a password is required" in err:
            raise DrfleetError(
                f"sudo asks for a password for `{command.display()}`",
                where=self.host.name,
                fix="give the ssh_user password-less sudo (a line `USER ALL=(ALL) NOPASSWD:ALL` "
                "in /etc/sudoers.d/), connect as root, or export the sudo password in "
                f"{self.password_env}",
            )
        if self._sudo_password and any(s in err for s in SUDO_REFUSED):
            raise DrfleetError(
                f"sudo did not accept the password in {self.password_env}",
                where=self.host.name,
                fix=f"check {self.password_env} (it is the sudo password of the ssh_user)",
            )

    def _exec(self, line: str, stdin: Stdin, timeout: float | None) -> tuple[int, str, str]:
        raise NotImplementedError

    def _sinks(self) -> tuple[_Sink, _Sink]:
        stream = None if self._quiet else self.options.stream
        return (
            _Sink(
                PrefixWriter(self.host.name, stream, self._hide) if stream else None, self._lines
            ),
            _Sink(PrefixWriter(self.host.name, stream, self._hide) if stream else None),
        )

    def stream_out(self, command: Command, become: bool | None = None) -> Iterator[bytes]:
        """A command's stdout as chunks, while it runs (e.g. `docker save` to relay)."""
        raise NotImplementedError

    def _timed_out(self, timeout: float | None) -> DrfleetError:
        return DrfleetError(f"command timed out after {timeout:g} s", where=self.host.name)


Stdin = str | bytes | Iterable[bytes] | None


def _prefixed(first: bytes, stdin: Stdin) -> Iterator[bytes]:
    yield first
    yield from _chunks(stdin)


def _chunks(stdin: Stdin) -> Iterator[bytes]:
    if stdin is None:
        return
    if isinstance(stdin, str):
        stdin = stdin.encode()
    if isinstance(stdin, bytes):
        for i in range(0, len(stdin), 1 << 16):
            yield stdin[i : i + (1 << 16)]
        return
    yield from stdin


class _Sink:
    """Collects one output stream, and echoes it live (prefixed) or hands on its lines, when
    asked to."""

    def __init__(
        self, echo: PrefixWriter | None, lines: Callable[[str], None] | None = None
    ) -> None:
        self.data = bytearray()
        self.echo = echo
        self.lines, self.seen = lines, 0
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, chunk: bytes) -> None:
        self.data += chunk
        if self.echo is not None:
            self.echo.write(self.decoder.decode(chunk))
        if self.lines is not None:
            end = self.data.rfind(b"\n")
            if end >= self.seen:
                for line in bytes(self.data[self.seen : end]).split(b"\n"):
                    self.lines(line.decode("utf-8", "replace"))
                self.seen = end + 1

    def text(self) -> str:
        if self.echo is not None:
            self.echo.write(self.decoder.decode(b"", final=True))
            self.echo.flush()
        return self.data.decode("utf-8", errors="replace")


class _Feeder(threading.Thread):
    """Writes stdin from its own thread, so a command that fills its output before reading
    all its input cannot deadlock us."""

    def __init__(
        self, chunks: Iterator[bytes], write: Callable[[bytes], Any], close: Callable[[], Any]
    ) -> None:
        super().__init__(daemon=True, name="drfleet-stdin")
        self.chunks, self.write, self.close = chunks, write, close
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for chunk in self.chunks:
                self.write(chunk)
        except (OSError, EOFError) as exc:  # the command stopped reading; its status says why
            log.debug("stdin feed stopped: %s", exc)
        except BaseException as exc:  # the source failed (e.g. docker save): fail the run
            self.error = exc
        finally:
            with contextlib.suppress(OSError):
                self.close()


def _pump(fh: IO[bytes], sink: _Sink) -> None:
    while chunk := os.read(fh.fileno(), 1 << 16):
        sink.feed(chunk)


class LocalSession(Session):
    """`connection: local`: the machine drfleet runs on, without SSH."""

    def stream_out(self, command: Command, become: bool | None = None) -> Iterator[bytes]:
        wrapped, stdin = self.prepare(command, become, None)
        return _stream_local(wrapped, self.host.name, b"".join(_chunks(stdin)))

    @property
    def is_root(self) -> bool:
        return os.geteuid() == 0

    def _exec(self, line: str, stdin: Stdin, timeout: float | None) -> tuple[int, str, str]:
        proc = _shell(line)
        assert proc.stdin and proc.stdout and proc.stderr
        out, err = self._sinks()
        feeder = _Feeder(_chunks(stdin), proc.stdin.write, proc.stdin.close)
        feeder.start()
        readers = [
            threading.Thread(target=_pump, args=(fh, sink), daemon=True)
            for fh, sink in ((proc.stdout, out), (proc.stderr, err))
        ]
        for r in readers:
            r.start()
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise self._timed_out(timeout) from None
        for r in readers:
            r.join()
        feeder.join()
        if feeder.error is not None:
            raise DrfleetError(
                f"input for the command failed: {feeder.error}", where=self.host.name
            )
        return code, out.text(), err.text()


def _shell(line: str) -> subprocess.Popen[bytes]:
    """A local /bin/sh -c LINE with all three streams piped."""
    return subprocess.Popen(
        ["/bin/sh", "-c", line],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _stream_local(command: Command, where: str, stdin: bytes = b"") -> Iterator[bytes]:
    line = command.render()
    proc = _shell(line)
    assert proc.stdout and proc.stderr and proc.stdin
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.write(stdin)
    proc.stdin.close()
    try:
        while chunk := os.read(proc.stdout.fileno(), 1 << 16):
            yield chunk
        code = proc.wait()
        if code != 0:
            err = mask(proc.stderr.read().decode(errors="replace"), command.secrets()).strip()
            raise DrfleetError(
                f"`{command.display()[:80]}` exited with status {code}: {err[-500:]}", where=where
            )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class SSHSession(Session):
    def __init__(self, host: Host, options: Options | None = None) -> None:
        super().__init__(host, options)
        self.known = KnownHosts(
            self.options.known_hosts or host.known_hosts,
            accept_new=self.options.accept_new_host_keys,
        )
        self.conn: Connection | None = None
        self.hops: list[Connection] = []  # gateways, first hop first
        self._config: Config | None = None

    @property
    def is_root(self) -> bool:
        return bool(self._connection().user == "root")

    @property
    def connect_timeout(self) -> float:
        cap = self.options.connect_timeout
        return min(self.host.connect_timeout, cap) if cap else self.host.connect_timeout

    def _make(
        self,
        address: str,
        port: int | None,
        user: str | None,
        name: str,
        gateway: Connection | None = None,
        depth: int = 0,
    ) -> Connection:
        if self._config is None:
            self._config = Config()  # ~/.ssh/config and /etc/ssh/ssh_config, read once
        via: Connection | bool | None = gateway
        if gateway is None:
            via = self._configured_jump(address, name, depth)
        timeout = self.connect_timeout
        connect_kwargs: dict[str, Any] = {"banner_timeout": timeout, "auth_timeout": timeout}
        if self.host.ssh_key:
            connect_kwargs["key_filename"] = [os.path.expanduser(self.host.ssh_key)]
            connect_kwargs["look_for_keys"] = False
        conn = Connection(
            address,
            user=user,
            port=port,
            gateway=via,
            connect_timeout=timeout,
            connect_kwargs=connect_kwargs,
            config=self._config,
        )
        self.known.attach(conn.client, name)
        return conn

    def _configured_jump(self, address: str, name: str, depth: int) -> Connection | bool | None:
        """The ProxyJump that ssh_config gives `address`, built here hop by hop so every hop's
        key is checked against known_hosts (Fabric would build it trusting any key). None
        when there is none (a ProxyCommand still applies); False: no jump at all, for
        `ProxyJump none` as ssh reads it, and for the host itself (given as None, Fabric would
        read ssh_config again and build a gateway to a host named "none", unchecked)."""
        assert self._config is not None
        jump = self._config.base_ssh_config.lookup(address).get("proxyjump", "")
        if not jump:
            return None
        if jump.strip().lower() == "none":
            return False
        if depth >= MAX_HOPS:
            raise DrfleetError(
                f"ssh_config's ProxyJump for {address} goes more than {MAX_HOPS} hops deep",
                where=name,
                fix="check ~/.ssh/config for a ProxyJump that leads back to itself",
            )
        gateway = None
        for spec in jump.split(","):
            juser, jhost, jport = parse_jump(spec.strip())
            if jhost == address:
                return False  # a wildcard entry naming the host itself
            explicit = jport if ":" in spec.rpartition("@")[2] else None
            gateway = self._make(jhost, explicit, juser, f"{name} via {jhost}", gateway, depth + 1)
            self.hops.append(gateway)
        return gateway

    def _connection(self) -> Connection:
        if self.conn is None:
            gateway = None
            if self.host.proxy_jump:
                juser, jhost, jport = parse_jump(self.host.proxy_jump)
                gateway = self._make(
                    jhost, jport, juser or self.host.ssh_user, f"{self.host.name} via {jhost}"
                )
                self.hops.append(gateway)
            self.conn = self._make(
                self.host.address, self.host.ssh_port, self.host.ssh_user, self.host.name, gateway
            )
        return self.conn

    def open(self) -> None:
        conn = self._connection()
        if conn.is_connected:
            return
        attempts = 1 + max(0, self.options.connect_retries)
        where = f"{self.host.name} ({conn.user}@{self.host.address}:{self.host.ssh_port})"
        key = self.host.ssh_key
        if key and not os.path.isfile(os.path.expanduser(key)):
            raise DrfleetError(
                f"ssh_key {key} is not a file on this machine",
                where=where,
                fix="set ssh_key in the inventory to your private key's path, or leave it out to "
                "use your SSH agent and default keys",
            )
        for attempt in range(attempts):
            try:
                conn.open()
                return
            except socket.gaierror as exc:
                raise Unreachable(
                    f"its name {self.host.address!r} does not resolve "
                    f"({exc.strerror or exc}): no connection was tried",
                    where=where,
                    fix="check the host's address in the inventory, or this machine's DNS and "
                    "/etc/hosts",
                ) from None
            except HostKeyError:
                raise
            except paramiko.BadHostKeyException as exc:
                raise self.known.changed_error(self.host.name, exc) from None
            except paramiko.AuthenticationException as exc:
                raise DrfleetError(
                    f"authentication failed: {exc}",
                    where=where,
                    fix="check ssh_user and ssh_key in the inventory, and that the key is in "
                    "the user's ~/.ssh/authorized_keys on the host",
                ) from None
            except (OSError, EOFError, paramiko.SSHException) as exc:
                reason = _reason(exc)
                if attempt + 1 < attempts:
                    log.debug("%s: connect failed (%s), retrying", where, reason)
                    if self.options.notice:
                        self.options.notice(
                            self.host.name, f"{reason}; trying again ({attempt + 2} of {attempts})"
                        )
                    time.sleep(0.5 * 2**attempt)
                    conn.close()
                    continue
                raise Unreachable(
                    f"unreachable: {reason} (tried {attempts} times)",
                    where=where,
                    fix=f"check that the host is up and that port {self.host.ssh_port} is open "
                    "from this machine",
                ) from None

    def _exec(self, line: str, stdin: Stdin, timeout: float | None) -> tuple[int, str, str]:
        self.open()
        transport = self._connection().transport
        try:
            chan = transport.open_session(timeout=self.host.connect_timeout)
            chan.exec_command(line)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise Unreachable(f"connection lost: {_reason(exc)}", where=self.host.name) from None
        out, err = self._sinks()
        feeder = _Feeder(_chunks(stdin), chan.sendall, chan.shutdown_write)
        feeder.start()
        deadline = time.monotonic() + timeout if timeout else None
        try:
            while True:
                select.select([chan], [], [], 0.2)
                while chan.recv_ready():
                    out.feed(chan.recv(1 << 16))
                while chan.recv_stderr_ready():
                    err.feed(chan.recv_stderr(1 << 16))
                if (
                    chan.exit_status_ready()
                    and chan.eof_received
                    and not chan.recv_ready()
                    and not chan.recv_stderr_ready()
                ):
                    break
                if chan.closed and not chan.exit_status_ready():
                    raise Unreachable("connection lost while the command ran", where=self.host.name)
                if deadline and time.monotonic() > deadline:
                    raise self._timed_out(timeout)
            code = chan.recv_exit_status()
        finally:
            chan.close()
            feeder.join(5)
        if feeder.error is not None:
            raise DrfleetError(
                f"input for the command failed: {feeder.error}", where=self.host.name
            )
        return code, out.text(), err.text()

    def stream_out(self, command: Command, become: bool | None = None) -> Iterator[bytes]:
        self.open()
        chan = self._connection().transport.open_session(timeout=self.host.connect_timeout)
        try:
            wrapped, stdin = self.prepare(command, become, None)
            chan.exec_command(wrapped.render())
            for chunk in _chunks(stdin):
                chan.sendall(chunk)
            chan.shutdown_write()
            while chunk := chan.recv(1 << 16):
                yield chunk
            code = chan.recv_exit_status()
            if code != 0:
                err = b""
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(1 << 16)
                raise DrfleetError(
                    f"`{command.display()[:80]}` exited with status {code}: "
                    f"{mask(err.decode(errors='replace'), command.secrets()).strip()[-500:]}",
                    where=self.host.name,
                )
        finally:
            chan.close()

    def host_key(self) -> tuple[str, str] | None:
        self.open()
        key = self._connection().transport.get_remote_server_key()
        return key.get_name(), key.get_base64()

    def channel(self, address: str, port: int, timeout: float = 10) -> Any:
        """A socket-like channel to address:port as this host sees it (SSH direct-tcpip on the
        session's connection): how the controller reaches a port no one else may."""
        self.open()
        transport = self._connection().transport
        return transport.open_channel(
            "direct-tcpip", (address, port), ("127.0.0.1", 0), timeout=timeout
        )

    def close(self) -> None:
        for conn in (self.conn, *reversed(self.hops)):
            if conn is not None:
                conn.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "connection timed out"
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        errs = {
            os.strerror(e.errno) if isinstance(e, OSError) and e.errno else str(e)
            for e in exc.errors.values()
        }
        return ", ".join(sorted(errs))
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


def parse_jump(spec: str) -> tuple[str | None, str, int]:
    """`[user@]host[:port]` -> (user, host, port)."""
    user, _, rest = spec.rpartition("@")
    host, port = rest, 22
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        if tail.startswith(":"):
            port = int(tail[1:])
    elif rest.count(":") == 1:
        host, p = rest.split(":")
        port = int(p)
    return (user or None), host, port


def session(host: Host, options: Options | None = None) -> Session:
    return LocalSession(host, options) if host.is_local else SSHSession(host, options)


@dataclass
class Outcome(Generic[T]):
    host: Host
    value: T | None = None
    error: DrfleetError | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def unreachable(self) -> bool:
        return isinstance(self.error, Unreachable)


def fan_out(
    hosts: Iterable[Host], fn: Callable[[Host], T], *, limit: int = DEFAULT_LIMIT
) -> list[Outcome[T]]:
    """Runs fn on every host, at most `limit` at once; one outcome per host, in order."""
    hosts = list(hosts)

    def one(host: Host) -> Outcome[T]:
        started = time.monotonic()
        try:
            value = fn(host)
            return Outcome(host, value=value, elapsed=time.monotonic() - started)
        except DrfleetError as exc:
            return Outcome(host, error=exc, elapsed=time.monotonic() - started)
        except Exception as exc:
            log.debug("%s: unexpected error", host.name, exc_info=True)
            err = DrfleetError(
                f"internal error: {type(exc).__name__}: {exc}",
                where=host.name,
                fix="run with DRFLEET_DEBUG=1 for the traceback and report it",
            )
            return Outcome(host, error=err, elapsed=time.monotonic() - started)

    if not hosts:
        return []
    with ThreadPoolExecutor(
        max_workers=max(1, min(limit, len(hosts))), thread_name_prefix="drfleet-host"
    ) as pool:
        return list(pool.map(one, hosts))

"""The `drfleet` program as a newcomer meets it (issue 29), run for real: argv in, text and
exit status out. Exit statuses: 0 done, 1 a host failed or could not be reached, 2 bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import drfleet, schema_ok

UNREACHABLE = """\
all:
  vars: {ssh_user: fleet, ssh_port: 1, connect_timeout: 2}
  hosts:
    h1: {address: 127.0.0.1, roles: [trainer, robomaker], vcpus: 8}
    h2: {address: 127.0.0.1, roles: [robomaker], vcpus: 8}
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DRfC's files as `drfleet init` writes them, and an inventory whose hosts refuse SSH
    (127.0.0.1, a closed port)."""
    d = tmp_path_factory.mktemp("env")
    assert drfleet("init", cwd=d).code == 0
    (d / "unreachable.yml").write_text(UNREACHABLE)
    return d


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    return stderr.strip()


def test_help_offers_drfleets_options_only(env: Path) -> None:
    run = drfleet("--help", cwd=env)
    assert run.code == 0
    for invoke_own in ("--dry", "-R", "--config", "--echo", "--pty", "--list-depth", "--hide"):
        assert invoke_own not in run.stdout, invoke_own
    assert "-V, --version" in run.stdout and "train" in run.stdout


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        # -R ran a real train; -f took the inventory as an Invoke config file
        (["-R", "train"], "-R before the command"),
        (["-f", "inv.yml", "facts"], "-f before the command"),
        (["-f", "4", "facts"], "-f before the command"),
        (["trian"], "no command 'trian'; did you mean train?"),
        (["help"], "`drfleet --help` lists the commands"),
        (["train", "--worker", "3"], "unknown flag --worker; did you mean --workers?"),
        (["train", "--workers=abc"], "--workers takes a whole number, not 'abc'"),
        (["train", "--workers", "abc"], "--workers takes a whole number, not 'abc'"),
        (["status", "-v", "1"], "-v takes no value: -v, -vv or -vvv"),
        (["train", "--workers", "0"], "--workers 0: a run needs at least one worker"),
        (["plan", "--workers", "-3"], "--workers -3: a run needs at least one worker"),
    ],
)
def test_bad_input_is_one_line_with_the_fix_and_exit_2(
    env: Path, argv: list[str], says: str
) -> None:
    run = drfleet(*argv, cwd=env)
    assert run.code == 2, (run.code, run.stdout, run.stderr)
    assert says in _one_line(run.stderr), run.stderr
    assert not (env / ".drfleet").exists()  # nothing ran


def test_verbosity_is_counted_and_its_help_says_so(env: Path) -> None:
    run = drfleet("train", "--help", cwd=env)
    assert "-v, --verbose" in run.stdout and "-v INT" not in run.stdout
    assert drfleet("facts", "-vv", "--json", cwd=env).code == 0


@pytest.mark.parametrize("command", ["facts", "status", "stop", "provision", "train"])
def test_an_unreachable_host_is_exit_1_in_every_command(env: Path, command: str) -> None:
    run = drfleet(command, "-i", str(env / "unreachable.yml"), cwd=env, timeout=120)
    assert run.code == 1, (command, run.stdout[-2000:], run.stderr[-2000:])
    out = run.stdout + run.stderr
    assert "Traceback" not in out
    for host in ("h1", "h2"):  # every host named, not the first alone
        named = f"{host} (fleet@127.0.0.1:1): unreachable" in out
        in_row = re.search(rf"│ {host} .*│ unreachable .*Connection refused", out) is not None
        assert named or (command == "status" and in_row), out
    if command == "status":  # the reason and what to do, in the table
        assert "fix: check that the host is up and that port 1 is open" in out, out


def test_status_says_the_agent_is_not_installed_and_what_to_do(tmp_path: Path) -> None:
    """Before any provision: not a command line cut off, but the reason and the fix."""
    inv = tmp_path / "here.yml"
    inv.write_text("all:\n  hosts:\n    localhost: {connection: local, roles: [trainer]}\n")
    run = drfleet("status", "-i", str(inv), "--json", cwd=tmp_path)
    if Path("/usr/local/lib/drfleet/drfleet-agent.pyz").exists():
        pytest.skip("this machine has an agent")
    assert run.code == 1
    assert run.json["hosts"]["localhost"] == {
        "reachable": True,
        "error": "localhost: the agent is not installed",
        "fix": "run `drfleet provision` (it installs the agent and what it needs)",
    }
    table = drfleet("status", "-i", str(inv), cwd=tmp_path).stdout
    assert "the agent is not installed" in table and "fix: run `drfleet provision`" in table


def test_a_bad_value_names_the_file_it_is_in(env: Path) -> None:
    run_env = env / "run.env"
    before = run_env.read_text()
    try:
        run_env.write_text(before + "DR_WORKERS=abc\n")
        line = len(run_env.read_text().splitlines())
        run = drfleet("plan", cwd=env)
        assert run.code == 2
        assert f"{run_env}:{line}: DR_WORKERS='abc' is not a whole number" in run.stderr
    finally:
        run_env.write_text(before)


def test_the_inventory_is_found_from_env_dir_and_said(env: Path, tmp_path: Path) -> None:
    """From another directory, --env-dir's inventory/local.yml (where init wrote it) is the
    one used, and every command that touches hosts says which it loaded."""
    inv = env / "inventory" / "local.yml"
    assert inv.exists()
    run = drfleet("plan", "--env-dir", str(env), cwd=tmp_path)
    assert f"inventory: {inv}, 1 host" in run.stderr, run.stderr
    run = drfleet("facts", cwd=tmp_path)
    assert "inventory: this machine alone (no inventory file found), 1 host" in run.stderr
    assert "inventory:" not in drfleet("facts", "--json", cwd=tmp_path).stderr


@pytest.mark.parametrize("command", ["facts", "status", "stop", "provision"])
def test_every_command_speaks_one_json(env: Path, command: str) -> None:
    """A host's reachability, its error and its fix as fields of their own (facts said
    reachable, provision unreachable, stop ok; the fix was inside the error), checked
    against the command's schema in docs/schemas."""
    run = drfleet(command, "-i", str(env / "unreachable.yml"), "--json", cwd=env, timeout=120)
    assert run.code == 1
    schema_ok(command, run.json)
    for host in ("h1", "h2"):
        h = run.json["hosts"][host]
        assert h["reachable"] is False and h["error"].startswith(f"{host} (fleet@127.0.0.1:1)")
        assert "fix:" not in h["error"] and "port 1 is open" in h["fix"]


def test_facts_of_a_host_that_answers_fit_the_schema(env: Path) -> None:
    run = drfleet("facts", "--json", cwd=env)
    assert run.code == 0
    schema_ok("facts", run.json)
    assert run.json["hosts"]["localhost"]["error"] is None


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--workers", "0", "--json"],
        ["plan", "--json", "--env-dir", "/nonexistent"],
        ["train", "--json", "-i", "unreachable.yml"],
        ["train", "--workers=abc", "-j"],
        ["trian", "--json"],
    ],
)
def test_a_json_command_that_fails_says_why_on_stdout(env: Path, argv: list[str]) -> None:
    """On an error, -j printed nothing on stdout: a script had only stderr's prose."""
    run = drfleet(*argv, cwd=env, timeout=120)
    assert run.code in (1, 2) and run.stdout.strip(), run.stderr
    schema_ok("error", run.json)
    assert run.json["error"] and run.json["error"] in run.stderr


def test_hosts_are_chosen_and_forked_wherever_hosts_are_asked_or_changed(env: Path) -> None:
    """-l and -f on status (facts and provision had them), -f on train, stop and evaluate, and
    stop -C says what it would end, changing nothing (a lock or record made counts)."""
    inv = str(env / "unreachable.yml")
    run = drfleet("status", "-i", inv, "-l", "h2", "-f", "1", "--json", cwd=env, timeout=120)
    assert run.code == 1 and list(run.json["hosts"]) == ["h2"]
    for command in ("train", "stop", "evaluate"):
        help_text = drfleet(command, "--help", cwd=env).stdout
        assert "-f INT, --forks=INT" in help_text, command
    assert "-C, --check" in drfleet("stop", "--help", cwd=env).stdout
    before = (
        sorted(p.name for p in (env / ".drfleet").iterdir()) if (env / ".drfleet").exists() else []
    )
    run = drfleet("stop", "-C", "-i", inv, "-j", cwd=env, timeout=120)
    assert run.code == 1 and run.json["check"] is True
    schema_ok("stop", run.json)
    assert {h: r["would_stop"] for h, r in run.json["hosts"].items()} == {"h1": [], "h2": []}
    after = (
        sorted(p.name for p in (env / ".drfleet").iterdir()) if (env / ".drfleet").exists() else []
    )
    assert after == before
    assert drfleet("status", "-i", inv, "-f", "0", cwd=env).code == 2

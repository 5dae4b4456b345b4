"""The command line on the embedded default inventory: this machine, no SSH."""

from pathlib import Path

from tests.conftest import REPO, drfleet, invoke, schema_ok


def test_facts_on_this_machine_from_anywhere(tmp_path: Path) -> None:
    run = drfleet("facts", "--json", cwd=tmp_path)
    assert run.code == 0, run.stderr
    ((name, facts),) = run.json["hosts"].items()
    assert name == "localhost" and facts["reachable"] is True
    assert facts["vcpus"] >= 1 and facts["memory_mb"] > 0
    assert facts["os"]["id"] and isinstance(facts["gpus"], list)
    assert set(facts["docker"]) >= {"installed", "running", "version", "swarm"}


def test_every_task_has_help_for_every_flag() -> None:
    from drfleet.commandline.cli import ns

    for name in ns.task_names:
        task = ns[name]
        params = [p for p in task.argspec(task.body).parameters if p != "c"]
        assert task.__doc__, name
        missing = [p for p in params if p not in task.help]
        assert not missing, f"{name}: no help for {missing}"


def test_init_says_what_it_wrote_and_kept_as_json(tmp_path: Path) -> None:
    first = drfleet("init", "--json", cwd=tmp_path)
    assert first.code == 0, first.stderr
    schema_ok("init", first.json)
    assert str(tmp_path / "system.env") in [str(tmp_path / p) for p in first.json["created"]]
    again = drfleet("init", "-j", cwd=tmp_path)
    assert again.json["created"] == [] and sorted(again.json["kept"]) == sorted(
        first.json["created"]
    )


def test_train_without_drfc_files_is_one_clear_message(tmp_path: Path) -> None:
    run = drfleet("train", cwd=tmp_path)
    assert run.code == 2
    assert f"{tmp_path / 'system.env'}: file not found" in run.stderr
    assert "Traceback" not in run.stderr


def test_bad_inventory_is_one_message_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "inv.yml"
    bad.write_text("all:\n  hosts:\n    a: {ssh_port: 0}\n")
    run = invoke("facts", "--inventory", str(bad))
    assert run.code == 2
    assert f"{bad}:3: ssh_port: 0 is out of range" in run.stderr
    assert "Traceback" not in run.stderr
    run = invoke("facts", "--inventory", str(REPO / "inventory" / "local.yml"), "--host", "h9")
    assert run.code == 2 and "h9: no host or group of the inventory" in run.stderr


def test_flags_mean_one_thing_everywhere_and_h_is_help() -> None:
    """No automatic short flags: a letter means what SHORT says in every command (as in
    Ansible: -i inventory, -l hosts, -f forks, -C check, -D diff, -v verbose, -j json), no
    destructive flag (--wipe, --converge...) has one, and -h prints each command's help."""
    import subprocess
    import sys

    from drfleet.commandline.cli import ns
    from drfleet.commandline.command import SHORT

    for name in ns.task_names:
        for arg in ns[name].get_arguments():
            shorts = [n for n in arg.names if len(n) == 1]
            assert shorts == (
                [SHORT[arg.attr_name or arg.name]] if (arg.attr_name or arg.name) in SHORT else []
            ), (name, arg.names)
        help_ = subprocess.run(
            [sys.executable, "-m", "drfleet", name, "-h"], capture_output=True, text=True
        )
        assert help_.returncode == 0 and "Usage:" in help_.stdout, (name, help_.stderr)
    wipe = next(a for a in ns["train"].get_arguments() if a.name == "wipe")
    assert wipe.names == ("wipe",)


def test_upload_without_an_upload_bucket_says_so_before_connecting(tmp_path: Path) -> None:
    assert (
        drfleet("init", cwd=tmp_path).code == 0
    )  # DRfC's template: DR_UPLOAD_S3_BUCKET=not-defined
    for args in (("upload-model",), ("car-model", "--upload")):
        run = drfleet(*args, cwd=tmp_path)
        assert run.code == 2, run.stdout + run.stderr
        assert "DR_UPLOAD_S3_BUCKET is not-defined: no upload bucket is defined" in run.stderr
        assert "system.env:" in run.stderr and "--local" in run.stderr


def test_increment_upload_model_numbers_the_upload_prefix_and_keeps_the_old_run_env(
    tmp_path: Path,
) -> None:
    """DRfC's dr-increment-upload-model (scripts/upload/increment.sh): no host, no S3."""
    assert drfleet("init", "--json", cwd=tmp_path).code == 0
    run_env = tmp_path / "run.env"
    before = run_env.read_text()
    lines = [ln for ln in before.splitlines() if not ln.startswith("DR_UPLOAD_S3_PREFIX=")]
    run_env.write_text("\n".join([*lines, "DR_UPLOAD_S3_PREFIX=my-upload-3", ""]))
    run = drfleet("increment-upload-model", "--json", cwd=tmp_path)
    assert run.code == 0, run.stderr
    schema_ok("increment-upload-model", run.json)
    assert (run.json["from"], run.json["to"]) == ("my-upload-3", "my-upload-4")
    assert "DR_UPLOAD_S3_PREFIX=my-upload-4" in run_env.read_text()
    assert "DR_UPLOAD_S3_PREFIX=my-upload-3" in (tmp_path / "run.env.bak").read_text()


def test_a_commands_help_is_shown_before_its_positional_argument(tmp_path: Path) -> None:
    """invoke took `--help` for the model id of `droa-get-model --help` and ran it."""
    for argv in (
        ["droa-get-model", "--help"],
        ["droa-get-model", "-h"],
        ["droa-get-model", "x1", "--help"],
    ):
        run = drfleet(*argv, cwd=tmp_path)
        assert run.code == 0 and "Usage: drfleet droa-get-model" in run.stdout, run.stderr


def test_droa_commands_say_what_is_missing_before_they_reach_anything(tmp_path: Path) -> None:
    run = drfleet("droa-list-models", cwd=tmp_path)
    assert run.code == 2 and "set DR_DROA_URL in system.env or pass --url" in run.stderr
    run = drfleet(
        "droa-list-models", "--url", "http://droa.example.com", "--username", "a", cwd=tmp_path
    )
    assert run.code == 2 and "is not an https:// address" in run.stderr
    bad = drfleet(
        "droa-get-model", "../x", "--url", "https://127.0.0.1:1", "--username", "a", cwd=tmp_path
    )
    assert bad.code == 2 and "cannot reach it" in bad.stderr  # the site first, then the id
    run = drfleet("droa-import-model", "--model-dir", "d", "--best", cwd=tmp_path)
    assert run.code == 2 and "--best and --checkpoint choose from the run's S3" in run.stderr
    named = ("--url", "https://127.0.0.1:1", "--username", "a", "--model-name", "my_model")
    run = drfleet("droa-import-model", "--model-dir", "d", *named, cwd=tmp_path)
    assert run.code == 2 and "--model-name 'my_model': a DRoA model name is" in run.stderr
    assert "cannot reach" not in run.stderr  # refused before DRoA is asked anything


def test_log_analysis_says_what_is_wrong_before_it_reaches_a_host(tmp_path: Path) -> None:
    run = drfleet("log-analysis", "--stop", "--logs", cwd=tmp_path)
    assert run.code == 2 and "give one of --stop, --logs and --collect" in run.stderr
    run = drfleet("log-analysis", "--images-from", "registry", cwd=tmp_path)
    assert run.code == 2 and "--images-from registry: use pull, controller" in run.stderr
    (tmp_path / "system.env").write_text("DR_CLOUD=local\nDR_ANALYSIS_IMAGE='cpu latest'\n")
    (tmp_path / "run.env").write_text("DR_LOCAL_S3_MODEL_PREFIX=m\n")
    run = drfleet("log-analysis", "--detach", cwd=tmp_path)
    assert run.code == 2 and "DR_ANALYSIS_IMAGE=cpu latest is not an image tag" in run.stderr
    assert "system.env" in run.stderr


def test_download_models_source_flags_go_with_a_source(tmp_path: Path) -> None:
    run = drfleet("download-model", "--source-profile", "minio", cwd=tmp_path)
    assert run.code == 2 and "go with --source URL" in run.stderr
    run = drfleet(
        "download-model", "--source", "s3://b/m", "--target", "t", "--source-endpoint",
        "localhost:9000", cwd=tmp_path,
    )  # fmt: skip
    assert run.code == 2 and "is not an http(s):// address" in run.stderr

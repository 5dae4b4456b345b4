"""The metrics stack's pure parts (drfleet.runs.metrics): when it is wanted, what the host
gets (Telegraf listening on DR_TELEGRAF_PORT), its containers (nothing published beyond the
host's loopback, the password only in Grafana's environment), and provision bringing its
images to the trainer."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import yaml

from drfleet.commandline.cli import drfc_vars
from drfleet.drfc.envfile import parse
from drfleet.errors import DrfleetError
from drfleet.runs import metrics
from tests.unit.test_provision_plan import facts, plan


def env(text: str):  # type: ignore[no-untyped-def]
    return parse(text, "system.env")


def test_wanted_only_when_the_workers_send_to_the_stacks_telegraf() -> None:
    assert metrics.wanted(env("DR_TELEGRAF_HOST=telegraf\n"))
    assert metrics.refusal(env("DR_TELEGRAF_HOST=telegraf\n")) is None
    for text, said in [
        ("", "DR_TELEGRAF_HOST is not set"),
        ("DR_TELEGRAF_HOST=10.0.0.9\n", "DR_TELEGRAF_HOST=10.0.0.9: the workers send"),
    ]:
        assert not metrics.wanted(env(text))
        why = metrics.refusal(env(text))
        assert why and said in why and "DR_TELEGRAF_HOST=telegraf" in why
    assert metrics.port(env("")) == "8092"
    assert metrics.port(env("DR_TELEGRAF_PORT=9125\n")) == "9125"
    with pytest.raises(DrfleetError, match="DR_TELEGRAF_PORT=udp is not a port"):
        metrics.port(env("DR_TELEGRAF_PORT=udp\n"))


def test_the_bundle_is_the_stacks_files_with_telegraf_on_the_port() -> None:
    staged = metrics.bundle("9125")
    with tarfile.open(fileobj=io.BytesIO(staged.tar)) as tar:
        names = set(tar.getnames())
        conf = tar.extractfile("telegraf.conf").read().decode()  # type: ignore[union-attr]
        source = yaml.safe_load(tar.extractfile("grafana/datasources/influxdb.yml"))  # type: ignore[arg-type]
        board = json.load(tar.extractfile("grafana/dashboards/deepracer-training.json"))  # type: ignore[arg-type]
        owners = {(m.uid, m.gid) for m in tar.getmembers()}
    assert {"telegraf.conf", "grafana/dashboards/dashboards.yml"} <= names
    assert 'service_address = "udp://:9125"' in conf and "{{PORT}}" not in conf
    assert 'urls = ["http://influxdb:8086"]' in conf and 'database = "influx"' in conf
    ds = source["datasources"][0]
    assert (ds["uid"], ds["url"], ds["database"]) == (
        metrics.DATASOURCE,
        "http://influxdb:8086",
        metrics.DATABASE,
    )
    assert board["uid"] == metrics.DASHBOARD
    for p in board["panels"]:  # what s3_metrics.py sends, per worker, from that data source
        q = p["targets"][0]["query"]
        assert 'FROM "dr_training_episodes"' in q and '"worker"' in q
        assert p["targets"][0]["datasource"]["uid"] == metrics.DATASOURCE
    assert owners == {(0, 0)}
    assert metrics.bundle("9125").digest == staged.digest  # content-named: stable
    assert metrics.bundle("8092").digest != staged.digest


def test_containers_publish_only_grafana_on_loopback_and_keep_the_password_in_env() -> None:
    docs = metrics.stack_containers("/var/lib/drfleet/files/abc", "s3cret")
    by = {d["name"]: d for d in docs}
    assert {d["image"] for d in docs} == set(metrics.IMAGES.values())
    assert {a for d in docs for a in d["aliases"]} == {"telegraf", "influxdb", "grafana"}
    assert all(d["networks"] == ["sagemaker-local"] for d in docs)
    published = {n: d.get("ports") for n, d in by.items() if d.get("ports")}
    assert published == {"drfleet-grafana": {"3000/tcp": 3000}}
    assert by["drfleet-grafana"]["publish_address"] == "127.0.0.1"
    assert by["drfleet-grafana"]["env"]["GF_SECURITY_ADMIN_PASSWORD"] == "s3cret"
    text = json.dumps({n: {k: v for k, v in d.items() if k != "env"} for n, d in by.items()})
    assert "s3cret" not in text
    mounts = {m["target"]: m for d in docs for m in d["mounts"]}
    assert (
        mounts["/etc/telegraf/telegraf.conf"]["source"]
        == "/var/lib/drfleet/files/abc/telegraf.conf"
    )
    assert mounts["/etc/grafana/provisioning"]["read_only"]


def test_grafanas_password_is_made_once_and_kept_in_a_0600_file(tmp_path: Path) -> None:
    path, first = metrics.credentials(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600 and len(first) >= 20
    assert metrics.credentials(tmp_path) == (path, first)
    path.write_text("{not json")
    with pytest.raises(DrfleetError, match="cannot be read"):
        metrics.credentials(tmp_path)


def test_the_running_grafanas_password_wins_and_is_written_for_this_env_dir(
    tmp_path: Path,
) -> None:
    """A second env dir's `metrics` takes the password the running Grafana started with (from
    the first env dir), so it does not restart Grafana with one of its own; the first's file
    stays true."""
    first, second = tmp_path / "a", tmp_path / "b"
    path_a, made = metrics.credentials(first)
    env = json.dumps(
        ["PATH=/usr/bin", "GF_SECURITY_ADMIN_USER=admin", f"GF_SECURITY_ADMIN_PASSWORD={made}"]
    )
    running = metrics.password_in(env)
    assert running == made
    path_b, got = metrics.credentials(second, running)
    assert got == made and json.loads(path_b.read_text())["password"] == made
    assert path_b.stat().st_mode & 0o777 == 0o600
    assert metrics.credentials(first, running) == (path_a, made)
    path_a.write_text("{not json")  # a broken file is replaced by what runs
    assert metrics.credentials(first, running) == (path_a, made)
    assert json.loads(path_a.read_text())["password"] == made


@pytest.mark.parametrize(
    "env",
    [
        "",
        "null",
        "[]",
        '["GF_SECURITY_ADMIN_PASSWORD="]',
        '["X=GF_SECURITY_ADMIN_PASSWORD=a"]',
        "{}",
    ],
)
def test_no_password_in_an_environment_without_one(env: str) -> None:
    assert metrics.password_in(env) is None


def test_provision_brings_the_metrics_images_to_the_trainer(tmp_path: Path) -> None:
    (tmp_path / "system.env").write_text(
        "DR_SIMAPP_VERSION=6.0.4-cpu\nDR_TELEGRAF_HOST=telegraf\nDR_TELEGRAF_PORT=8092\n"
    )
    images = drfc_vars(str(tmp_path))["drfc_images"]
    assert images["metrics"] == list(metrics.IMAGES.values())
    tasks = plan(tmp_path, facts(), {"drfc_images": images})
    msg = tasks["Simulation images"].msg
    assert all(i in msg for i in metrics.IMAGES.values()), msg
    (tmp_path / "system.env").write_text("DR_SIMAPP_VERSION=6.0.4-cpu\n")
    assert "metrics" not in drfc_vars(str(tmp_path))["drfc_images"]


def test_a_trainer_without_the_images_is_refused_naming_them() -> None:
    """docker image inspect's answer for a host provisioned without DR_TELEGRAF_HOST."""
    from types import SimpleNamespace

    from drfleet.hosts.remote import Result

    def run(command, **kw):  # type: ignore[no-untyped-def]
        argv = command.display()
        assert "docker image inspect" in argv and kw["become"] is True
        return Result("h1", argv, 1, "", "Error: No such image: telegraf:1.18-alpine\n", 0.1)

    with pytest.raises(DrfleetError) as err:
        metrics.lacking(SimpleNamespace(host=SimpleNamespace(name="h1"), run=run))  # type: ignore[arg-type]
    assert "h1 lacks telegraf:1.18-alpine; nothing was started" in err.value.message
    assert "drfleet provision" in (err.value.fix or "")

"""The metrics stack (DRfC's dr-start-metrics, docker/docker-compose-metrics.yml): Telegraf,
InfluxDB and Grafana, the same images, on the trainer's host and its overlay network, so
that every worker's simapp reaches Telegraf as `telegraf` (DR_TELEGRAF_HOST) wherever it
runs. Nothing is published beyond the host's loopback: Grafana on 127.0.0.1:3000, reached
from here through SSH; InfluxDB and Telegraf only on the overlay.

What the stack reads (drfleet/data/metrics: Telegraf's configuration, Grafana's data source
and training dashboard) goes to the host as one staged directory named by its content. The
specs and checks are pure; `bundle` and `credentials` read and write local files, `start`
tells the trainer's agent (through the executor)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from drfleet_agent.spec import ContainerSpec

from drfleet.drfc import envfile
from drfleet.drfc.envfile import EnvFile
from drfleet.errors import DrfleetError
from drfleet.hosts.inventory import Host, Inventory
from drfleet.hosts.remote import Options, Session
from drfleet.localfs import atomic_write
from drfleet.names import METRICS_DATA, METRICS_STACK, NETWORK
from drfleet.runs import execute
from drfleet.runs.training import Staged, dir_tar
from drfleet.shell import cmd

# docker/docker-compose-metrics.yml's images
IMAGES = {
    "telegraf": "telegraf:1.18-alpine",
    "influxdb": "influxdb:1.8-alpine",
    "grafana": "grafana/grafana:10.4.2",
}
NAME = "telegraf"  # what DR_TELEGRAF_HOST must name for the workers to reach this stack
DEFAULT_PORT = "8092"  # s3_metrics.py's default TELEGRAF_PORT, DRfC's DR_TELEGRAF_PORT
GRAFANA_PORT = 3000
DATABASE = "influx"  # docker/metrics/configuration.env INFLUXDB_DB
DATA = Path(__file__).resolve().parents[1] / "data" / "metrics"
DASHBOARD = "drfleet-training"  # the provisioned dashboard's uid
DATASOURCE = "drfleet-influxdb"
GRAFANA = "drfleet-grafana"  # its container


def wanted(system: EnvFile) -> bool:
    """Whether system.env sends the workers' metrics to the fleet's stack."""
    return system.get("DR_TELEGRAF_HOST", "") == NAME


def port(system: EnvFile, where: str = "system.env") -> str:
    """The UDP port the workers send to (DR_TELEGRAF_PORT), checked."""
    value = system.get("DR_TELEGRAF_PORT", "") or DEFAULT_PORT
    if not (value.isascii() and value.isdigit() and 0 < int(value) < 65536):
        raise DrfleetError(
            f"DR_TELEGRAF_PORT={value} is not a port", where=where, fix="DRfC's is 8092"
        )
    return value


def refusal(system: EnvFile) -> str | None:
    """Why `drfleet metrics` would receive nothing from this env dir's workers, or None."""
    host = system.get("DR_TELEGRAF_HOST", "")
    if host == NAME:
        return None
    said = f"DR_TELEGRAF_HOST={host}" if host else "DR_TELEGRAF_HOST is not set"
    return (
        f"{said}: the workers send their metrics to {host or 'nobody'}, not to the fleet's "
        f"Telegraf; set DR_TELEGRAF_HOST={NAME} (and DR_TELEGRAF_PORT=8092) in system.env as "
        "DRfC's template has them, then `drfleet train` again"
    )


def bundle(udp_port: str) -> Staged:
    """drfleet/data/metrics as the tar the host gets, Telegraf listening on udp_port."""

    def port_in(path: Path, data: bytes) -> bytes:
        return (
            data.replace(b"{{PORT}}", udp_port.encode()) if path.name == "telegraf.conf" else data
        )

    return Staged("metrics", DATA, dir_tar(DATA, "metrics", str(DATA), port_in))


def stack_containers(staged: str, password: str) -> list[dict[str, Any]]:
    """The three containers as docker-compose-metrics.yml has them, on the overlay by the
    names the configuration uses (telegraf, influxdb, grafana); InfluxDB's data on the host
    (METRICS_DATA), Grafana's in its container (its image runs it as a user of its own,
    which may not own a directory the agent mounts)."""
    common = {"networks": [NETWORK], "restart": "always", "role": "metrics"}
    return [
        {
            **common,
            "name": "drfleet-influxdb",
            "image": IMAGES["influxdb"],
            "aliases": ["influxdb"],
            "env": {"INFLUXDB_DB": DATABASE},
            "mounts": [{"source": f"{METRICS_DATA}/influxdb", "target": "/var/lib/influxdb"}],
        },
        {
            **common,
            "name": "drfleet-telegraf",
            "image": IMAGES["telegraf"],
            "aliases": ["telegraf"],
            "mounts": [
                {
                    "source": f"{staged}/telegraf.conf",
                    "target": "/etc/telegraf/telegraf.conf",
                    "read_only": True,
                }
            ],
        },
        {
            **common,
            "name": GRAFANA,
            "image": IMAGES["grafana"],
            "aliases": ["grafana"],
            "env": {"GF_SECURITY_ADMIN_USER": "admin", "GF_SECURITY_ADMIN_PASSWORD": password},
            "ports": {f"{GRAFANA_PORT}/tcp": GRAFANA_PORT},
            "publish_address": "127.0.0.1",
            "mounts": [
                {
                    "source": f"{staged}/grafana",
                    "target": "/etc/grafana/provisioning",
                    "read_only": True,
                }
            ],
        },
    ]


def credentials(env_dir: Path, running: str | None = None) -> tuple[Path, str]:
    """Grafana's admin password: the running Grafana's when there is one (started perhaps
    from another env dir: its data lives in its container, so the password it started with
    is the one it takes), written into this env dir's .drfleet/grafana-credentials.json
    (0600); else the one that file holds; else a new one, made once and kept. DRfC's is
    admin/admin."""
    path = env_dir / ".drfleet" / "grafana-credentials.json"
    try:
        kept = str(json.loads(path.read_text())["password"])
    except FileNotFoundError:
        kept = None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if running is None:
            raise DrfleetError(
                f"{path} cannot be read: {exc}", fix="remove it; a new password is made"
            ) from exc
        kept = None
    password = running or kept or secrets.token_urlsafe(18)
    if password != kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps({"user": "admin", "password": password}) + "\n", mode=0o600)
    return path, password


def password_in(env: str) -> str | None:
    """GF_SECURITY_ADMIN_PASSWORD in a container's environment as `docker inspect` gives it
    with --format '{{json .Config.Env}}' (a JSON list of NAME=value), or None."""
    try:
        items = json.loads(env)
    except ValueError:
        return None
    for item in items if isinstance(items, list) else ():
        name, _, value = str(item).partition("=")
        if name == "GF_SECURITY_ADMIN_PASSWORD" and value:
            return value
    return None


def running_password(sess: Session) -> str | None:
    """The password the host's Grafana container was started with, if it has one; read as
    the secret it is (never echoed)."""
    res = sess.run(
        cmd("docker", "inspect", "--format", "{{json .Config.Env}}", GRAFANA),
        become=True,
        check=False,
        prints_secret=True,
        timeout=60,
        task="metrics password",
    )
    return password_in(res.stdout) if res.exit_code == 0 else None


def start(
    inv: Inventory, options: Options, env_dir: Path, stop: bool = False
) -> tuple[Host, Path | None]:
    """Starts (or with stop, ends) the stack on the trainer's host, as a stack of its own
    that no run's train or stop touches; its host and the file holding Grafana's password
    (the running Grafana's, so every env dir's file names the one it takes; None on stop,
    which neither reads nor writes a password). InfluxDB's data stays on the host when it
    ends."""
    trainer = next((h for h in inv.hosts.values() if "trainer" in h.roles), None)
    if trainer is None:
        raise DrfleetError("no host has the trainer role: the metrics stack runs on it")
    path = env_dir / "system.env"
    system = None
    if not stop:
        if not path.exists():
            raise DrfleetError(f"no system.env in {env_dir.resolve()}", fix="pass --env-dir")
        system = envfile.load(path)
        why = refusal(system)
        if why:
            raise DrfleetError(why, where=str(path))
    with execute.opened({trainer.name: trainer}, options) as sessions:
        creds = None
        containers: tuple[ContainerSpec, ...] = ()
        staged = {}
        if system is not None:
            creds, password = credentials(env_dir, running_password(sessions[trainer.name]))
            lacking(sessions[trainer.name])
            files = bundle(port(system, str(path)))
            staged = {"metrics": files}
            docs = stack_containers(files.host_path, password)
            containers = execute.typed(trainer.name, METRICS_STACK, docs)
        intent = execute.Intent(
            "metrics",
            # no run's assignment: forced, at a generation of its own, none taken from the runs'
            (execute.Stack(trainer.name, METRICS_STACK, "", containers, 180, True, generation=1),),
            preflight=execute.Preflight(),
            staged=staged,
        )
        execute.execute(intent, env_dir, sessions, options.limit).raise_first()
    return trainer, creds


def lacking(sess: Session) -> None:
    """Refuses before anything starts when the host lacks one of the stack's images."""
    res = sess.run(
        cmd("docker", "image", "inspect", "--format", "{{.Id}}", *IMAGES.values()),
        become=True,
        check=False,
        timeout=60,
        task="metrics images",
    )
    if res.exit_code != 0:
        missing = [i for i in IMAGES.values() if i in res.stderr] or list(IMAGES.values())
        raise DrfleetError(
            f"{sess.host.name} lacks {', '.join(missing)}; nothing was started",
            fix="with DR_TELEGRAF_HOST=telegraf in system.env, `drfleet provision` puts the "
            "metrics images on the trainer",
        )

"""What the executor (execute.py) does on hosts besides telling their agents: what must
hold before anything is sent (shims; the hosts' statuses for sharing.conflicts), whether
hosts the run needs answer, shipping the files workers mount (stage), and whether the hosts
reach the run's S3 (reach_check)."""

from __future__ import annotations

from typing import Any

from drfleet.errors import DrfleetError
from drfleet.hosts import agent_client
from drfleet.hosts.agent_client import HostStatus
from drfleet.hosts.inventory import Host
from drfleet.hosts.remote import Session, Unreachable, fan_out
from drfleet.names import (
    NETWORK,
    TASKSET_SHIM,
)
from drfleet.runs import sharing, specs, training
from drfleet.shell import Command, Raw, cmd, sh
from drfleet.ui import Board


def statuses(
    sessions: dict[str, Session],
    hosts: list[str],
    limit: int,
    unreached: dict[str, str] | None = None,
) -> dict[str, HostStatus]:
    """host -> its agent's status, for the hosts that answer (the others are the caller's
    business: pushing to them says what is wrong). unreached: filled with each host that
    could not be reached at all, and why."""

    def one(host: Host) -> HostStatus:
        return agent_client.status(sessions[host.name])

    outcomes = fan_out([sessions[h].host for h in hosts], one, limit=limit)
    if unreached is not None:
        unreached.update(
            {o.host.name: o.error.message for o in outcomes if o.unreachable and o.error}
        )
    return {o.host.name: o.value for o in outcomes if o.value is not None and not o.error}


def reached(unreached: dict[str, str], needed: set[str]) -> None:
    """Refuses, naming every one, when hosts the run needs could not be reached."""
    down = sorted(h for h in unreached if h in needed)
    if down:
        raise Unreachable(
            "\n".join(unreached[h] for h in down)
            + f"\nnothing was started: the run needs {', '.join(down)}",
        )


def minio_keys(held: dict[str, Any] | None, creds: dict[str, str]) -> dict[str, str]:
    """The keys this run's containers get with DR_CLOUD=local: minio's own when the fleet's
    minio runs already (held: its stack, started from another env dir, maybe), else this env
    dir's (sharing.running_keys). Pure: a command that acts adopts them (execute's adopt)."""
    running = sharing.running_keys(held)
    return creds if running is None else running


def shims(sessions: dict[str, Session], docs: dict[str, dict[str, Any]], limit: int) -> None:
    """Every host about to run workers has what provision installs for them: the taskset shim
    (a host provisioned by an older drfleet lacks it). Checked before anything starts."""
    hosts = [
        sessions[h].host
        for h, d in docs.items()
        if any(c["role"] == "robomaker" for c in d["containers"])
    ]

    def one(host: Host) -> bool:
        res = sessions[host.name].run(
            cmd("test", "-x", TASKSET_SHIM), check=False, timeout=30, task="taskset shim"
        )
        return res.exit_code == 0

    outcomes = fan_out(hosts, one, limit=limit)
    # a host that cannot be asked does not lack the shim: pushing to it says what is wrong
    lacking = sorted(o.host.name for o in outcomes if o.ok and not o.value)
    if lacking:
        raise DrfleetError(
            f"{', '.join(lacking)} {'lacks' if len(lacking) == 1 else 'lack'} "
            f"{TASKSET_SHIM}, which pins each worker's Gazebo to CPUs of its own host "
            "(provisioned by an older drfleet); nothing was started",
            fix=f"run `drfleet provision --host {','.join(lacking)}`, then train again",
        )


def stage(sess: Session, staged: dict[str, training.Staged], doc: dict[str, Any]) -> None:
    """Copies each staged directory (DR_ROBOMAKER_MOUNT_SIMAPP_DIR / _SCRIPTS_DIR, the
    metrics stack's files) to a host whose containers mount it, once per content: the
    directory is named by its digest and appears whole (rename) or not."""
    sources = [m["source"] for c in doc["containers"] for m in c.get("mounts") or []]
    for st in staged.values():
        if not any(s == st.host_path or s.startswith(st.host_path + "/") for s in sources):
            continue
        final, tmp = st.host_path, f"{st.host_path}.partial"
        install = sh(
            Command(
                (
                    Raw("test -d"),
                    final,
                    Raw("|| { rm -rf"),
                    tmp,
                    Raw("&& mkdir -p"),
                    tmp,
                    Raw("&& tar -x -f - -C"),
                    tmp,
                    Raw("--no-same-owner && mv"),
                    tmp,
                    final,
                    Raw("; }"),
                )
            )
        )
        sess.run(install, stdin=st.tar, become=True, timeout=600, task=f"copy {st.key}")


def has_container(sess: Session, name: str) -> bool:
    """Whether the host has this container, in any state: a run is live there. Asked of
    docker, not the agent's status, which lags while a pass creates containers."""
    res = sess.run(
        cmd("docker", "ps", "-aq", "--filter", f"name=^{name}$"),
        become=True,
        check=False,
        timeout=30,
        task="is the trainer running",
    )
    return res.exit_code == 0 and bool(res.stdout.strip())


PORTS = (
    "2377/tcp, 7946/tcp and udp, 4789/udp and IP protocol 50 (ESP, when the overlay is "
    "encrypted) (the swarm overlay) and 9000/tcp (minio)"
)
PROBE = (
    "import sys, urllib.request, urllib.error\n"
    "try:\n"
    "    urllib.request.urlopen(sys.argv[1] + '/minio/health/live', timeout=8)\n"
    "except urllib.error.HTTPError:\n"
    "    pass\n"
    "except Exception as exc:\n"
    "    sys.exit(str(exc))\n"
)


# DR_CLOUD=aws: S3's regional endpoint (boto3's for the region; us-east-1 keeps the global
# name) answers over TLS, and without keys the instance role's credentials reach a container:
# IMDSv2 (token, then the role's name), as botocore's InstanceMetadataFetcher asks for them
AWS_PROBE = (
    "import sys, urllib.request, urllib.error\n"
    "region, role = sys.argv[1], sys.argv[2] == 'role'\n"
    "name = 's3' if region == 'us-east-1' else 's3.' + region\n"
    "try:\n"
    "    urllib.request.urlopen('https://%s.amazonaws.com/' % name, timeout=8)\n"
    "except urllib.error.HTTPError:\n"
    "    pass\n"
    "except Exception as exc:\n"
    "    sys.exit('S3 (%s.amazonaws.com): %s' % (name, exc))\n"
    "if role:\n"
    "    imds = 'http://169.254.169.254/latest/'\n"
    "    try:\n"
    "        token = urllib.request.urlopen(urllib.request.Request(imds + 'api/token', "
    "method='PUT', headers={'X-aws-ec2-metadata-token-ttl-seconds': '60'}), timeout=3).read()\n"
    "        ask = urllib.request.Request(imds + 'meta-data/iam/security-credentials/', "
    "headers={'X-aws-ec2-metadata-token': token.decode()})\n"
    "        if not urllib.request.urlopen(ask, timeout=3).read().strip():\n"
    "            sys.exit('the instance metadata names no role')\n"
    "    except Exception as exc:\n"
    "        sys.exit('no instance role reaches a container: %s' % exc)\n"
)
ROLE_FIX = (
    "attach an IAM role that may use the bucket to {host}'s instance, with a metadata hop "
    "limit of 2 so containers reach it (aws ec2 modify-instance-metadata-options "
    "--http-put-response-hop-limit 2); or give DR_LOCAL_S3_PROFILE keys of its own"
)


def reach_check(
    p: training.Prepared,
    sessions: dict[str, Session],
    trainer: str,
    board: Board | None,
    keys: bool = True,
) -> None:
    """Every host about to run containers must reach the run's S3 from the containers'
    network before they start; otherwise the workers would wait 20 minutes for the trainer and
    fail. With minio on the trainer (local) that is every worker host, over sagemaker-local;
    with DR_CLOUD=remote, every host, the trainer's included, to DR_REMOTE_MINIO_URL; with
    aws, every host to S3 in DR_AWS_APP_REGION and, without keys, to its instance role."""
    storage = p.cfg.storage
    remote = storage in ("remote", "aws")
    url = p.cfg.get("DR_REMOTE_MINIO_URL") if storage == "remote" else "http://minio:9000"
    probe = [PROBE, url]
    if storage == "aws":
        probe = [AWS_PROBE, p.cfg.setting("DR_AWS_APP_REGION"), "keys" if keys else "role"]
    hosts = sorted({w.host for w in p.plan.workers} | {trainer})
    if not remote:
        hosts.remove(trainer)

    def one(host: Host) -> None:
        if board:
            board.update(
                host.name, "checking the way to S3" if remote else "checking the way to the trainer"
            )
        image = specs.simapp_image(p.cfg, p.caps[host.name].gpus > 0)
        res = sessions[host.name].run(
            cmd(
                "docker",
                "run",
                "--rm",
                "--network",
                NETWORK,
                "--entrypoint",
                "python3",
                image,
                "-c",
                *probe,
            ),
            become=True,
            check=False,
            timeout=90,
            task="reach S3",
        )
        if res.exit_code != 0 and storage == "aws":
            raise DrfleetError(
                f"DR_CLOUD=aws: from the containers' network, {res.tail(1)}",
                where=host.name,
                fix=ROLE_FIX.format(host=host.name)
                if "instance" in res.tail(1)
                else f"let {host.name} reach S3 over HTTPS; then run train again",
            )
        if res.exit_code != 0 and remote:
            raise DrfleetError(
                f"cannot reach DR_REMOTE_MINIO_URL={url} from the containers' network: "
                f"{res.tail(2)}",
                where=host.name,
                fix=f"let {host.name} reach that address and port; then run train again",
            )
        if res.exit_code != 0:
            raise DrfleetError(
                f"cannot reach minio on the trainer {trainer} over the {NETWORK} overlay: "
                f"{res.tail(2)}",
                where=host.name,
                fix=f"open between {host.name} and {trainer}: {PORTS}; then run train again",
            )

    failed = [o for o in fan_out([sessions[h].host for h in hosts], one) if o.error]
    if failed:
        raise DrfleetError(
            "\n".join(o.error.message for o in failed if o.error)
            + "\nnothing was started on the worker hosts"
        )

"""The agent's only contact with dockerd (through the docker SDK)."""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import docker
import docker.errors
import docker.types
import requests

from drfleet_agent.binds import existing, unsafe_sources
from drfleet_agent.reconcile import L_FLEET, L_HASH, L_NAME, L_ROLE, L_RUN, Observed
from drfleet_agent.spec import ContainerSpec, Mount

COMPOSE_LABELS = ("com.docker.compose.network", "com.docker.compose.project")


class DockerDown(Exception):
    """dockerd cannot be reached; the agent waits and reconnects."""


class ActionFailed(Exception):
    """dockerd refused an action; the message is meant for the status of that container."""


def parse_time(value: str | None) -> float | None:
    if not value or value.startswith("0001-01-01"):
        return None
    head, _, frac = value.rstrip("Z").partition(".")
    stamp = datetime.fromisoformat(head + "+00:00").timestamp()
    return stamp + (float("0." + frac[:6]) if frac else 0.0)


@contextlib.contextmanager
def _guard(what: str) -> Iterator[None]:
    try:
        yield
    except (requests.exceptions.ConnectionError, ConnectionError) as exc:
        raise DockerDown(f"dockerd unreachable: {exc}") from None
    except docker.errors.ImageNotFound:
        raise ActionFailed(
            f"{what}: image not on this host (drfleet provision brings it)"
        ) from None
    except docker.errors.APIError as exc:
        raise ActionFailed(f"{what}: {exc.explanation or exc}") from None
    except docker.errors.DockerException as exc:
        raise DockerDown(f"dockerd unreachable: {exc}") from None


class Engine:
    def __init__(self, base_url: str | None = None, timeout: int = 30) -> None:
        try:
            self.client = docker.DockerClient(
                base_url=base_url or "unix:///var/run/docker.sock", timeout=timeout
            )
        except docker.errors.DockerException as exc:
            raise DockerDown(str(exc)) from None
        self.api = self.client.api

    def ping(self) -> dict[str, Any]:
        with _guard("ping"):
            info: dict[str, Any] = self.api.info()
            return info

    def observe(self, names: set[str]) -> list[Observed]:
        """Our labelled containers (inspected) and any container holding a desired name."""
        out = []
        with _guard("list containers"):
            for c in self.api.containers(all=True):
                labels = c.get("Labels") or {}
                cname = (c.get("Names") or ["/"])[0].lstrip("/")
                if L_NAME not in labels and cname not in names:
                    continue
                if L_NAME not in labels:
                    out.append(Observed(c["Id"], cname, labels, c.get("State", "")))
                    continue
                try:
                    info = self.api.inspect_container(c["Id"])
                except docker.errors.NotFound:
                    continue  # removed meanwhile
                st = info["State"]
                bound = (info.get("NetworkSettings") or {}).get("Ports") or {}
                out.append(
                    Observed(
                        id=c["Id"],
                        name=cname,
                        labels=labels,
                        status=st.get("Status", ""),
                        exit_code=int(st.get("ExitCode") or 0),
                        started_at=parse_time(st.get("StartedAt")),
                        finished_at=parse_time(st.get("FinishedAt")),
                        error=st.get("Error") or ("out of memory" if st.get("OOMKilled") else ""),
                        ports={k: int(v[0]["HostPort"]) for k, v in bound.items() if v},
                        addresses={
                            k: v[0].get("HostIp") or "0.0.0.0"  # noqa: S104 (reported, not bound)
                            for k, v in bound.items()
                            if v
                        },
                    )
                )
        return out

    def ensure_network(self, name: str, fleet: str, swarm_active: bool) -> None:
        with _guard(f"network {name}"):
            if self.api.networks(names=[name]):
                return
            if swarm_active:
                return  # an attachable overlay resolves through the managers on first use
            labels = {k: name for k in COMPOSE_LABELS}
            labels[L_FLEET] = fleet
            self.api.create_network(name, driver="bridge", labels=labels)

    def create(
        self, spec: ContainerSpec, fleet: str, run_id: str, image_id: str | None = None
    ) -> str:
        """image_id: the image as provisioning verified it (StateDir.read_images); the
        container is made from it rather than from whatever the tag names now."""
        labels = dict(spec.labels)
        labels.update(
            {
                L_FLEET: fleet,
                L_RUN: run_id,
                L_NAME: spec.name,
                L_HASH: spec.spec_hash(run_id),
                L_ROLE: spec.role,
            }
        )
        devices = []
        if spec.gpus:
            ids = spec.gpus if isinstance(spec.gpus, list) else None
            count = spec.gpus if isinstance(spec.gpus, int) else 0
            devices.append(
                docker.types.DeviceRequest(count=count, device_ids=ids, capabilities=[["gpu"]])
            )
        first = spec.networks[0] if spec.networks else None
        host_config = self.api.create_host_config(
            port_bindings={
                k: (spec.publish_address, v) if v else (spec.publish_address,)
                for k, v in spec.ports.items()
            },
            mounts=[
                docker.types.Mount(m.target, m.source, type="bind", read_only=m.read_only)
                for m in spec.mounts
            ],
            device_requests=devices or None,
            init=spec.init or None,
            ipc_mode=spec.ipc,
            shm_size=spec.shm_size,
            restart_policy={"Name": "no"},
            network_mode=first,
        )
        ports = [(int(p.split("/")[0]), p.split("/")[1]) for p in spec.ports]
        net_config = None
        if first:
            net_config = self.api.create_networking_config(
                {first: self.api.create_endpoint_config(aliases=[spec.name, *spec.aliases])}
            )
        for m in spec.mounts:
            # as `docker run -v` does: a missing bind source becomes an empty directory, made
            # only below a part of the path that is safe (never through another's link)
            if not os.path.lexists(m.source):
                unsafe = unsafe_sources([Mount(existing(m.source), m.target)], {0, os.geteuid()})
                if unsafe:
                    raise ActionFailed(f"create {spec.name}: {unsafe}")
                try:
                    os.makedirs(m.source, mode=0o755, exist_ok=True)
                except OSError as exc:
                    raise ActionFailed(
                        f"create {spec.name}: cannot create {m.source}: {exc.strerror}"
                    ) from None
        unsafe = unsafe_sources(spec.mounts, {0, os.geteuid()})
        if unsafe:
            raise ActionFailed(f"create {spec.name}: {unsafe}")
        if image_id:
            with _guard(f"create {spec.name}"):
                try:
                    self.api.inspect_image(image_id)
                except docker.errors.ImageNotFound:
                    raise ActionFailed(
                        f"create {spec.name}: image {spec.image} as provisioned "
                        f"({image_id[:19]}) is no longer on this host; run drfleet provision"
                    ) from None
        with _guard(f"create {spec.name}"):
            created = self.api.create_container(
                image_id or spec.image,
                command=spec.command,
                entrypoint=spec.entrypoint,
                working_dir=spec.working_dir,
                environment=spec.env,
                labels=labels,
                ports=ports or None,
                host_config=host_config,
                name=spec.name,
                hostname=spec.hostname,
                networking_config=net_config,
                detach=True,
            )
            cid: str = created["Id"]
            try:
                for net in spec.networks[1:]:
                    self.api.connect_container_to_network(
                        cid, net, aliases=[spec.name, *spec.aliases]
                    )
            except docker.errors.APIError:
                self.api.remove_container(cid, force=True)
                raise
        return cid

    def start(self, container_id: str, name: str) -> None:
        """Checks the bind sources again first, as docker will mount them now: a path that
        was safe when the container was created may not be at a restart."""
        with _guard(f"start {name}"):
            info = self.api.inspect_container(container_id)
            binds = [
                Mount(str(m.get("Source") or ""), str(m.get("Destination") or ""))
                for m in info.get("Mounts") or []
                if m.get("Type") == "bind"
            ]
            unsafe = unsafe_sources(binds, {0, os.geteuid()})
            if unsafe:
                raise ActionFailed(f"start {name}: {unsafe}")
            self.api.start(container_id)

    def remove(self, container_id: str, name: str) -> None:
        with _guard(f"remove {name}"), contextlib.suppress(docker.errors.NotFound):
            self.api.remove_container(container_id, force=True)

    def events(self) -> Any:
        """A blocking stream of labelled containers' events; `.close()` it to stop."""
        with _guard("events"):
            return self.client.events(decode=True, filters={"type": "container", "label": L_FLEET})

    def _managed(self, name: str, fleet: str | None) -> str:
        flt = {"label": [f"{L_NAME}={name}"] + ([f"{L_FLEET}={fleet}"] if fleet else [])}
        found = self.api.containers(all=True, filters=flt)
        if not found:
            raise ActionFailed(f"no container {name!r} managed by this agent")
        return str(found[0]["Id"])

    def logs(self, name: str, fleet: str | None, follow: bool, tail: int | None) -> Any:
        with _guard(f"logs {name}"):
            return self.api.logs(
                self._managed(name, fleet),
                stream=True,
                follow=follow,
                tail=tail if tail is not None else "all",
            )

    def log_lines(
        self, name: str, fleet: str | None, follow: bool, tail: int | None
    ) -> Iterator[dict[str, str]]:
        """Each line as {container, stream, time, line}: stdout and stderr read apart (with
        dockerd's timestamps) and merged as they come."""
        with _guard(f"logs {name}"):
            cid = self._managed(name, fleet)
        lines: queue.Queue[dict[str, str] | None] = queue.Queue(maxsize=1000)

        def pump(which: str) -> None:
            try:
                chunks = self.api.logs(
                    cid,
                    stream=True,
                    follow=follow,
                    timestamps=True,
                    stdout=which == "stdout",
                    stderr=which == "stderr",
                    tail=tail if tail is not None else "all",
                )
                buf = b""
                for chunk in chunks:
                    buf += chunk
                    *whole, buf = buf.split(b"\n")
                    for raw in whole:
                        stamp, _, text = raw.decode(errors="replace").partition(" ")
                        lines.put({"container": name, "stream": which, "time": stamp, "line": text})
            except (docker.errors.APIError, requests.exceptions.RequestException):
                pass
            finally:
                lines.put(None)

        for which in ("stdout", "stderr"):
            threading.Thread(target=pump, args=(which,), daemon=True).start()
        ended = 0
        while ended < 2:
            item = lines.get()
            if item is None:
                ended += 1
            else:
                yield item

"""This machine's own docker (the controller's): the images `provision --images-from
controller` copies to hosts. Hosts' dockers are reached only through their agents and SSH."""

from __future__ import annotations

from collections.abc import Iterator

from drfleet.errors import DrfleetError


def image_ids(images: set[str]) -> dict[str, str | None]:
    """Each image's id in this machine's docker, or None where it lacks the image."""
    import docker
    import docker.errors

    try:
        client = docker.from_env()
    except docker.errors.DockerException as exc:
        raise DrfleetError(
            f"--images-from controller needs docker on this machine: {exc}"
        ) from None
    out: dict[str, str | None] = {}
    for image in images:
        try:
            out[image] = client.images.get(image).id
        except docker.errors.ImageNotFound:
            out[image] = None
    return out


def identities(images: set[str]) -> dict[str, str | None]:
    """Each image's identity (probe.identity, what both image stores report alike) in this
    machine's docker, or None where it lacks the image."""
    import docker
    import docker.errors

    from drfleet.hosts.probe import identity

    client = docker.from_env()
    out: dict[str, str | None] = {}
    for image in images:
        try:
            out[image] = identity(client.images.get(image).attrs)
        except docker.errors.ImageNotFound:
            out[image] = None
    return out


def size(image: str) -> int | None:
    """The image's size in this machine's docker (about what `docker save` streams)."""
    import docker
    import docker.errors

    try:
        return int(docker.from_env().images.get(image).attrs.get("Size") or 0) or None
    except docker.errors.DockerException:
        return None


def save(image: str) -> Iterator[bytes]:
    """`docker save IMAGE` of this machine's docker, as a stream."""
    import docker

    client = docker.from_env(timeout=3600)
    yield from client.api.get_image(image, chunk_size=1 << 20)


def layers(image: str) -> tuple[str, list[str], bool]:
    """The image's id and diff ids, and whether this docker saves the OCI layout (Engine 25,
    API 1.44, on) rather than the older `<v1 id>/layer.tar` archive."""
    import docker
    import docker.errors

    try:
        client = docker.from_env()
        attrs = client.images.get(image).attrs
        api = str(client.version().get("ApiVersion") or "1.0")
    except docker.errors.DockerException as exc:
        raise DrfleetError(f"docker on this machine: {exc}") from None
    major, _, minor = api.partition(".")
    oci = (int(major), int(minor or 0)) >= (1, 44)
    return str(attrs["Id"]), [str(d) for d in attrs["RootFS"]["Layers"]], oci

"""Which images a host needs, from system.env as DRfC writes it."""

from __future__ import annotations

from drfleet.drfc.envfile import EnvFile

DEFAULT_SIMAPP = "awsdeepracercommunity/deepracer-simapp"
_FLAVOURS = ("cpu", "gpu")


def simapp_images(system: EnvFile) -> dict[str, str]:
    """{"cpu": ..., "gpu": ...}: the version DRfC writes with its tag (6.0.4-cpu); a GPU host
    gets the -gpu tag of the same version, a CPU host the -cpu one."""
    source = system.get("DR_SIMAPP_SOURCE", DEFAULT_SIMAPP)
    version = system.get("DR_SIMAPP_VERSION", "")
    if not version:
        return {}
    base, _, flavour = version.rpartition("-")
    if flavour not in _FLAVOURS or not base:
        return {"cpu": f"{source}:{version}", "gpu": f"{source}:{version}"}
    return {f: f"{source}:{base}-{f}" for f in _FLAVOURS}


def minio_image(system: EnvFile) -> str | None:
    if system.get("DR_CLOUD", "local").lower() not in ("local", "azure"):
        return None
    tag = system.get("DR_MINIO_IMAGE", "latest")
    return f"minio/minio:{tag}" if ":" not in tag else tag

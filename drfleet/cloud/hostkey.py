"""Host keys drfleet makes for a new instance, so that the first SSH connection to it is
verified against a key known before it booted (cloud-init's ssh_keys), not trusted on sight."""

from __future__ import annotations


def generate(comment: str) -> tuple[str, str]:
    """(private key in OpenSSH's PEM form, `ssh-ed25519 AAAA... comment`)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return private, f"{public} {comment}"


def known_hosts_lines(keys: dict[str, str]) -> list[str]:
    """known_hosts lines, address -> `ssh-ed25519 AAAA...` (the comment dropped)."""
    out = []
    for address, key in sorted(keys.items()):
        kind, blob = key.split()[:2]
        out.append(f"{address} {kind} {blob}")
    return out

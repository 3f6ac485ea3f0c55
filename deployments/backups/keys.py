"""The deployment's SSH key pair and host-key fingerprints (pure: no network)."""

import base64
import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db import transaction


def generate_keypair(comment: str) -> tuple[str, str]:
    """A new ed25519 key pair: (OpenSSH private key text, 'ssh-ed25519 <base64> <comment>')."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, f"{public.decode()} {comment}"


def fingerprint(key_line: str) -> str:
    """SHA256 fingerprint as ssh-keygen -l prints it, of '<type> <base64> [comment]'."""
    blob = base64.b64decode(key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@transaction.atomic
def ensure_identity(deployment):
    from .models import SshIdentity

    identity = SshIdentity.objects.select_for_update().filter(deployment=deployment).first()
    if identity is None:
        identity = make_identity(deployment)
    return identity


def make_identity(deployment):
    """A new key pair for the deployment, replacing any older one (targets then need the new line)."""
    from .models import SshIdentity

    private, public = generate_keypair(f"orthanc-portal-backup@{deployment.slug}")
    identity, _ = SshIdentity.objects.update_or_create(
        deployment=deployment,
        defaults={"private_key": private, "public_key": public, "fingerprint": fingerprint(public)},
    )
    return identity

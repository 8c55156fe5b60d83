"""Ed25519 signing keys: ``ota.key`` (private, PKCS#8 PEM, mode 0600) and ``ota.pub``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from intentcam.errors import UserError
from intentcam.ota.bundle import key_id

PRIVATE = "ota.key"
PUBLIC = "ota.pub"


def generate(folder: Path, *, force: bool = False) -> tuple[Path, Path, str]:
    """Write a new key pair into ``folder``; refuses to overwrite one unless ``force``."""
    folder.mkdir(parents=True, exist_ok=True)
    private_path, public_path = folder / PRIVATE, folder / PUBLIC
    if private_path.exists() and not force:
        raise UserError(f"{private_path} exists: refusing to overwrite a signing key (--force)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    private_path.unlink(missing_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public = key.public_key()
    public_path.write_bytes(public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return private_path, public_path, key_id(public)


def load_private(path: Path) -> Any:
    """The Ed25519 private key in ``path``; a one-line :class:`UserError` otherwise."""
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise UserError(f"--key {path}: no such file") from None
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"--key {path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"--key {path}: not an Ed25519 key")
    return key

"""``intentcam enroll``: the device's own TLS identity, made on the device.

The private key is generated here and never leaves the device (mode 0600); what leaves is a
certificate signing request whose common name is the device id. The site's gateway signs it with
the site CA (``provisioning/site_ca.py sign``), and the broker then knows the device by that name:
``provisioning/mosquitto/`` lets each certificate publish only under its own
``intentcam/v1/{site}/{device}/`` and read only its own ``cmd/`` topics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from intentcam.errors import UserError

KEY_FILE, CSR_FILE, CERT_FILE = "device.key", "device.csr", "device.pem"


@dataclass(frozen=True)
class Enrolment:
    key: Path
    csr: Path
    device: str
    site: str


def enroll(device: str, site: str, folder: Path, *, force: bool = False) -> Enrolment:
    """Write ``device.key`` (P-256, 0600) and ``device.csr`` (CN = device, O = site).

    An existing key is kept unless ``force``: replacing it would orphan the certificate the
    broker knows this device by.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key_path, csr_path = folder / KEY_FILE, folder / CSR_FILE
    if key_path.exists() and not force:
        raise UserError(
            f"{key_path} exists: this device is enrolled already (--force makes a new key, "
            "and its certificate must then be signed again)"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
        os.chmod(key_path, 0o600)
        subject = x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, device),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, site),
        ])  # fmt: skip
        request = (
            x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
        )
        csr_path.write_bytes(request.public_bytes(serialization.Encoding.PEM))
    except OSError as exc:
        raise UserError(f"enroll: cannot write in {folder}: {exc.strerror or exc}") from None
    return Enrolment(key_path, csr_path, device, site)

#!/usr/bin/env python3
"""The site CA, on the store's gateway: it signs what cameras send from ``intentcam enroll``.

    site_ca.py init  --out /etc/intentcam-site          # site-ca.pem + site-ca.key (0600)
    site_ca.py sign  --ca-dir /etc/intentcam-site --csr cam-door.csr --out cam-door.pem
    site_ca.py issue --ca-dir /etc/intentcam-site --name broker --server --dns gw.local --out-dir D
    site_ca.py issue --ca-dir /etc/intentcam-site --name gateway --out-dir D

``sign`` keeps the request's common name (the device id: the broker's ACL knows the device by
it, see ``mosquitto/``) and refuses names that are not device ids or that belong to the
gateway; the camera's private key never comes here. ``issue`` makes a key and certificate for
the broker (``--server``, with its DNS names and IP addresses) or the gateway's own client.
Needs the ``cryptography`` package (it comes with intentcam). Errors are one line, exit 1.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import re
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # intentcam's device.id rule
#: Names a camera may not take: the ACL gives them the gateway's rights.
RESERVED = {"gateway"}
CA_CERT, CA_KEY = "site-ca.pem", "site-ca.key"


class CaError(Exception):
    """One line for the user."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _load_ca(folder: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate((folder / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((folder / CA_KEY).read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise CaError(f"--ca-dir {folder}: no usable {CA_CERT} and {CA_KEY} ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CaError(f"{folder / CA_KEY}: not an EC key")
    return cert, key


def _leaf(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    days: int,
    server_names: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    ca_cert, ca_key = ca
    usage = [ExtendedKeyUsageOID.SERVER_AUTH] if server_names else [ExtendedKeyUsageOID.CLIENT_AUTH]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    )
    if server_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(server_names), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def init(out: Path, name: str, days: int) -> list[Path]:
    if (out / CA_KEY).exists():
        raise CaError(f"{out / CA_KEY} exists: the site CA is made once (every camera trusts it)")
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write_key(key, out / CA_KEY)
    _write_cert(cert, out / CA_CERT)
    return [out / CA_CERT, out / CA_KEY]


def sign(ca_dir: Path, csr_path: Path, out: Path, days: int) -> str:
    """Sign a camera's request; returns the device id it names."""
    try:
        request = x509.load_pem_x509_csr(csr_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise CaError(f"--csr {csr_path}: not a PEM certificate request ({exc})") from None
    try:
        valid = request.is_signature_valid
    except ValueError as exc:  # a mangled key or signature
        raise CaError(f"--csr {csr_path}: unreadable key or signature ({exc})") from None
    if not valid:
        raise CaError(f"--csr {csr_path}: its signature does not match its key")
    names = request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    device = str(names[0].value) if names else ""
    if not DEVICE_ID.match(device) or device in RESERVED:
        raise CaError(f"--csr {csr_path}: common name {device!r} is not a camera's device id")
    public_key = request.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise CaError(f"--csr {csr_path}: expected an EC key (intentcam enroll makes P-256)")
    _write_cert(_leaf(_load_ca(ca_dir), request.subject, public_key, days), out)
    return device


def issue(
    ca_dir: Path, name: str, out_dir: Path, days: int, server: bool, dns: list[str], ips: list[str]
) -> list[Path]:
    """A key and certificate made here: the broker's (``server``) or the gateway's client."""
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    try:
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    except ValueError as exc:
        raise CaError(f"--ip: {exc}") from None
    if server and not names:
        raise CaError("--server needs at least one --dns or --ip the cameras connect to")
    out_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = _leaf(_load_ca(ca_dir), subject, key.public_key(), days, names if server else None)
    _write_key(key, out_dir / f"{name}.key")
    _write_cert(cert, out_dir / f"{name}.pem")
    return [out_dir / f"{name}.pem", out_dir / f"{name}.key"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    first = commands.add_parser("init", help="make the site CA (once)")
    first.add_argument("--out", type=Path, required=True, metavar="DIR")
    first.add_argument("--name", default="intentcam site CA")
    first.add_argument("--days", type=int, default=3650)
    signing = commands.add_parser("sign", help="sign a camera's CSR (from intentcam enroll)")
    signing.add_argument("--ca-dir", type=Path, required=True, metavar="DIR")
    signing.add_argument("--csr", type=Path, required=True)
    signing.add_argument("--out", type=Path, required=True, metavar="PEM")
    signing.add_argument("--days", type=int, default=825)
    issuing = commands.add_parser("issue", help="a key and certificate for the broker or gateway")
    issuing.add_argument("--ca-dir", type=Path, required=True, metavar="DIR")
    issuing.add_argument("--name", required=True, help="CN: 'gateway' for the gateway client")
    issuing.add_argument("--out-dir", type=Path, required=True, metavar="DIR")
    issuing.add_argument("--server", action="store_true", help="a broker certificate")
    issuing.add_argument("--dns", action="append", default=[], help="server DNS name")
    issuing.add_argument("--ip", action="append", default=[], help="server IP address")
    issuing.add_argument("--days", type=int, default=825)
    args = parser.parse_args(argv)
    try:
        if args.command == "init":
            written = init(args.out, args.name, args.days)
            print("site CA: " + ", ".join(map(str, written)))
        elif args.command == "sign":
            device = sign(args.ca_dir, args.csr, args.out, args.days)
            print(f"signed {device}: {args.out}")
        else:
            written = issue(args.ca_dir, args.name, args.out_dir, args.days, args.server,
                            args.dns, args.ip)  # fmt: skip
            print(f"issued {args.name}: " + ", ".join(map(str, written)))
    except (CaError, OSError) as exc:
        print(f"site_ca: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``intentcam-ota``: keys, signed model bundles and MQTT rollouts for a fleet."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from intentcam import __version__
from intentcam.errors import UserError
from intentcam.models.store import sha256_of
from intentcam.ota.bundle import SEMVER, BundleError, trusted_keys, verify_bundle
from intentcam_ota import keys
from intentcam_ota.build import BuildRequest, build_bundle


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="intentcam-ota",
        description="Fleet-side model updates for intentcam devices: make a signing key, build "
        "and sign .swu bundles (SWUpdate format, accepted by hawkBit-style servers such as "
        "gooseBit), verify them, and roll them out over MQTT in rings.",
    )
    parser.add_argument("--version", action="version", version=f"intentcam-ota {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    keygen = commands.add_parser(
        "keygen",
        help="make an Ed25519 signing key pair",
        description=f"Write {keys.PRIVATE} (private, mode 0600: keep it off devices) and "
        f"{keys.PUBLIC} (copy it into each device's ota.trusted_keys_dir).",
    )
    keygen.add_argument("--out", type=Path, required=True, metavar="DIR")
    keygen.add_argument("--force", action="store_true", help="replace an existing key pair")
    keygen.add_argument("--json", action="store_true", help="print one JSON object")
    keygen.set_defaults(handler=cmd_keygen)

    build = commands.add_parser(
        "build",
        help="build and sign a model bundle",
        description="Package a model (and its Edge TPU build, labels, reference frames) with a "
        "signed manifest into an SWUpdate .swu. Tensor spec, labels and operating point come "
        "from the packaged manifest entry named by --spec-from (default --id). The self-test "
        "reference is measured here on --frames with the device's own detector code.",
    )
    build.add_argument("--model", type=Path, required=True, metavar="FILE")
    build.add_argument("--edgetpu", type=Path, metavar="FILE", help="its Edge TPU build")
    build.add_argument("--labels", type=Path, metavar="FILE", help="default: the manifest's")
    build.add_argument(
        "--id", required=True, help="model id (a manifest entry, or see --spec-from)"
    )
    build.add_argument("--spec-from", metavar="ID", help="manifest entry to take the spec from")
    build.add_argument("--version", dest="bundle_version", required=True, metavar="SEMVER")
    build.add_argument(
        "--serial",
        type=int,
        required=True,
        metavar="N",
        help="monotonic integer; devices refuse a serial not above theirs",
    )
    build.add_argument("--key", type=Path, required=True, metavar="DIR/ota.key")
    build.add_argument("--out", type=Path, required=True, metavar="BUNDLE.swu")
    build.add_argument(
        "--frames",
        type=Path,
        nargs="+",
        default=[],
        metavar="IMAGE",
        help="reference frames for the device self-test (people in view)",
    )
    build.add_argument(
        "--reference-from",
        type=Path,
        metavar="OLD.swu",
        help="hold the model to an earlier bundle's self-test results (same --frames) "
        "instead of its own",
    )
    build.add_argument(
        "--latency-budget-ms",
        type=float,
        metavar="MS",
        help="default: 10x this machine's time, at least 500",
    )
    build.add_argument("--min-firmware", default="0.0.0", metavar="SEMVER")
    build.add_argument(
        "--rollback",
        action="store_true",
        help="sign permission to install below the device's serial (downgrade)",
    )
    build.add_argument(
        "--hardware",
        action="append",
        metavar="BOARD:REVISION",
        help="hardware-compatibility for servers (default intentcam:1)",
    )
    build.add_argument("--json", action="store_true", help="print the manifest as JSON")
    build.set_defaults(handler=cmd_build)

    verify = commands.add_parser(
        "verify",
        help="check a bundle's signature and every file hash",
        description="Exits 0 when the bundle is intact and signed by a trusted key, 1 with a "
        "one-line reason otherwise.",
    )
    verify.add_argument("bundle", type=Path, metavar="BUNDLE.swu")
    verify.add_argument("--trusted-key", type=Path, required=True, metavar="PUB|DIR")
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.set_defaults(handler=cmd_verify)

    rollout = commands.add_parser(
        "rollout",
        help="install a bundle on devices over MQTT, ring by ring",
        description="Publish ota_install to devices in rings (default 1,10%%,100%%), follow "
        "their retained ota state, stop when the failure share exceeds --error-threshold, and "
        "print a table. Devices: --devices, or every device whose retained status is online.",
    )
    rollout.add_argument("--url", required=True, help="http(s) address devices download from")
    group = rollout.add_mutually_exclusive_group(required=True)
    group.add_argument("--sha256", metavar="HEX", help="sha256 of the bundle file")
    group.add_argument("--bundle", type=Path, metavar="FILE", help="compute the sha256 from it")
    rollout.add_argument("--broker", default="localhost", metavar="HOST")
    rollout.add_argument("--port", type=int)
    rollout.add_argument("--topic-root", default="intentcam/v1")
    rollout.add_argument("--site", required=True)
    rollout.add_argument("--devices", metavar="ID,ID,...", help="default: all online devices")
    rollout.add_argument("--rings", default="1,10%,100%", metavar="SPEC")
    rollout.add_argument("--error-threshold", type=float, default=0.2, metavar="SHARE")
    rollout.add_argument("--ring-timeout", type=float, default=900.0, metavar="SECONDS")
    rollout.add_argument("--tls", action="store_true")
    rollout.add_argument("--ca-file", type=Path)
    rollout.add_argument("--cert-file", type=Path)
    rollout.add_argument("--key-file", type=Path)
    rollout.add_argument("--username")
    rollout.add_argument("--password-file", type=Path)
    rollout.add_argument("--json", action="store_true", help="print one JSON object")
    rollout.set_defaults(handler=cmd_rollout)
    return parser


def cmd_keygen(args: argparse.Namespace) -> int:
    private, public, fingerprint = keys.generate(args.out, force=args.force)
    body = {"private_key": str(private), "public_key": str(public), "key_id": fingerprint}
    if args.json:
        print(json.dumps(body))
    else:
        print(f"private key {private} (mode 0600, keep it off devices)")
        print(f"public key  {public} (key id {fingerprint}): copy into /etc/intentcam/ota-keys/")
    return 0


def _hardware(values: list[str] | None) -> list[tuple[str, str]]:
    pairs = []
    for value in values or ["intentcam:1"]:
        board, _, revision = value.partition(":")
        if not board or not revision:
            raise UserError(f"--hardware {value!r}: expected BOARD:REVISION", exit_code=2)
        pairs.append((board, revision))
    return pairs


def cmd_build(args: argparse.Namespace) -> int:
    import re

    if not re.match(SEMVER, args.bundle_version):
        raise UserError(f"--version {args.bundle_version!r}: not a semantic version", exit_code=2)
    if args.serial < 1:
        raise UserError("--serial must be a positive integer", exit_code=2)
    if args.latency_budget_ms is not None and args.latency_budget_ms <= 0:
        raise UserError("--latency-budget-ms must be positive", exit_code=2)
    request = BuildRequest(
        model=args.model,
        id=args.id,
        version=args.bundle_version,
        serial=args.serial,
        key=args.key,
        out=args.out,
        edgetpu=args.edgetpu,
        labels=args.labels,
        spec_from=args.spec_from,
        frames=args.frames,
        latency_budget_ms=args.latency_budget_ms,
        min_firmware=args.min_firmware,
        rollback=args.rollback,
        hardware=_hardware(args.hardware),
        reference_from=args.reference_from,
    )
    if not args.frames:
        print(
            "intentcam-ota: warning: no --frames: the device self-test checks loading and "
            "latency only",
            file=sys.stderr,
        )
    try:
        manifest = build_bundle(request)
    except BundleError as exc:
        raise UserError(f"build: {exc.reason}") from None
    sha = sha256_of(args.out)
    if args.json:
        print(
            json.dumps(
                {
                    "bundle": str(args.out),
                    "sha256": sha,
                    "manifest": manifest.model_dump(mode="json"),
                }
            )
        )
    else:
        people = [summary.people for summary in manifest.selftest.expected]
        print(
            f"{args.out}: {manifest.id} {manifest.version} serial {manifest.serial}, "
            f"{len(manifest.files)} file(s), self-test people {people}, "
            f"budget {manifest.selftest.latency_budget_ms:.0f} ms"
        )
        print(f"sha256 {sha}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        bundle = verify_bundle(args.bundle, trusted_keys(args.trusted_key))
    except BundleError as exc:
        raise UserError(f"{args.bundle}: refused: {exc.reason}") from None
    manifest = bundle.manifest
    body = {
        "bundle": str(args.bundle),
        "ok": True,
        "id": manifest.id,
        "version": manifest.version,
        "serial": manifest.serial,
        "signed_by": bundle.signed_by,
        "files": len(manifest.files),
    }
    if args.json:
        print(json.dumps(body))
    else:
        print(
            f"{args.bundle}: OK, {manifest.id} {manifest.version} serial {manifest.serial}, "
            f"signed by key {bundle.signed_by}, {len(manifest.files)} file(s) verified"
        )
    return 0


def cmd_rollout(args: argparse.Namespace) -> int:
    from intentcam.config import MqttConfig
    from intentcam.telemetry.mqtt import describe_connect_error, make_client
    from intentcam_ota.rollout import Rollout, ring_sizes, subscribe

    sha256 = args.sha256 or sha256_of(args.bundle)
    config = MqttConfig(
        host=args.broker,
        port=args.port,
        tls=args.tls,
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
        username=args.username,
        password_file=args.password_file,
    )
    client = make_client(
        config,
        f"intentcam-ota-{hashlib.sha1(sha256.encode()).hexdigest()[:8]}",
        config.read_password(),
    )
    rollout = Rollout(
        client,
        args.topic_root,
        args.site,
        args.url,
        sha256,
        args.error_threshold,
        args.ring_timeout,
    )
    client.on_message = rollout.on_message
    try:
        client.connect(args.broker, config.effective_port, keepalive=30)
    except OSError as exc:
        raise UserError(f"broker {args.broker}: {describe_connect_error(exc)}") from None
    client.loop_start()
    try:
        subscribe(client, args.topic_root, args.site)
        devices = (
            [d for d in args.devices.split(",") if d] if args.devices else rollout.discover(2.0)
        )
        if not devices:
            raise UserError(f"no device online under {args.topic_root}/{args.site}")
        try:
            rings = ring_sizes(args.rings, len(devices))
        except ValueError as exc:
            raise UserError(f"--rings: {exc}", exit_code=2) from None
        completed = rollout.run(devices, rings)
    finally:
        client.loop_stop()
        client.disconnect()
    rows = [vars(result) for result in rollout.results.values()]
    if args.json:
        print(json.dumps({"completed": completed, "devices": rows}))
    else:
        _table(rows)
        print("rollout complete" if completed else "rollout STOPPED at the error threshold")
    return 0 if completed and all(r["state"] == "committed" for r in rows) else 1


def _table(rows: list[dict[str, Any]]) -> None:
    print(f"{'device':24} {'ring':>4}  {'state':12} {'version':10} reason")
    for row in rows:
        print(
            f"{row['device']:24} {row['ring']:>4}  {row['state']:12} "
            f"{row['version'] or '-':10} {row['reason'] or ''}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"intentcam-ota: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130

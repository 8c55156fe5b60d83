"""``intentcam enroll``: make this device's key (it stays here) and a CSR for the site CA."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from intentcam.cli.common import add_config_option, settings_from

NAME = "enroll"
DEFAULT_FOLDER = Path("/etc/intentcam/tls")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        NAME,
        help="make this device's TLS key and a certificate request for the site CA",
        description="Generate the device's private key here (it never leaves the device, mode "
        "0600) and a certificate signing request with CN = device.id and O = device.site. "
        "Copy the .csr to the gateway, sign it there (provisioning/site_ca.py sign), bring "
        "back device.pem and set mqtt.cert_file, mqtt.key_file and mqtt.ca_file.",
    )
    add_config_option(parser)
    parser.add_argument("--out", type=Path, default=DEFAULT_FOLDER, metavar="DIR",
                        help=f"where device.key and device.csr go (default {DEFAULT_FOLDER})")  # fmt: skip
    parser.add_argument("--force", action="store_true", help="replace an existing key")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from intentcam.service.enroll import CERT_FILE, enroll

    settings = settings_from(args)
    done = enroll(settings.device.id, settings.device.site, args.out, force=args.force)
    if args.json:
        print(json.dumps({"device": done.device, "site": done.site, "key": str(done.key),
                          "csr": str(done.csr)}))  # fmt: skip
        return 0
    print(
        f"enrolled {done.device} (site {done.site}): key {done.key} stays here, request {done.csr}"
    )
    print("next: on the gateway, provisioning/site_ca.py sign --csr device.csr --out "
          f"{CERT_FILE}; then in the config: [mqtt] tls = true, ca_file = <site CA>, "
          f"cert_file = \"{args.out / CERT_FILE}\", key_file = \"{done.key}\"")  # fmt: skip
    return 0

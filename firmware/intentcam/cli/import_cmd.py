"""``intentcam import-config``: first boot, the config from the SD card's boot partition."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "import-config"


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        NAME,
        help="move a config from the boot partition to /etc/intentcam (first boot)",
        description="Validate FILE (e.g. /boot/firmware/intentcam.toml, written from a laptop), "
        "move it to DEST/intentcam.toml with mode 0600 for the daemon's user, and remove it "
        "from the boot partition, leaving a note without secrets. An invalid file stays, with "
        "intentcam-import-error.txt beside it listing the problems. Run by "
        "intentcam-firstboot.service.",
    )
    parser.add_argument("file", type=Path, metavar="FILE")
    parser.add_argument("--dest", type=Path, default=Path("/etc/intentcam"), metavar="DIR",
                        help="where intentcam.toml goes (default /etc/intentcam)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from intentcam.service.first_boot import import_config

    done = import_config(args.file, args.dest)
    if args.json:
        print(json.dumps({"target": str(done.target), "device": done.device, "site": done.site}))
    else:
        print(f"imported {args.file} to {done.target} (device {done.device}, site {done.site})")
    return 0

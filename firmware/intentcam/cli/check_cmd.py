"""``intentcam check``: the installer's yes/no, one line per step."""

from __future__ import annotations

import argparse
import json

from intentcam.cli.common import add_config_option, nested

NAME = "check"


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        NAME,
        help="check config, geometry, clock, a running daemon, models, camera, detector, broker",
        description="Validate the config, say whose lines and zones count (the file's or live "
        "ones set over MQTT) and whether the clock is synchronised, read a running daemon's "
        "last health report, verify and load the models, grab a frame from the camera, run "
        "the detector on it and connect to the broker if one is configured. Prints "
        "PASS/WARN/FAIL/SKIP per step; exit code 0 unless a step failed.",
    )
    add_config_option(parser)
    parser.add_argument("--source", metavar="S", help="override camera.source")
    parser.add_argument(
        "--camera-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for a frame (default 10)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: `intentcam --help` and the other commands do not pay for them.
    from intentcam.service.check import Check, as_dicts

    check = Check(
        args.config, nested(camera={"source": args.source}), camera_timeout_s=args.camera_timeout
    )
    steps = check.run()
    ok = all(step.state != "fail" for step in steps)
    if args.json:
        print(json.dumps({"ok": ok, "steps": as_dicts(steps)}))
    else:
        for step in steps:
            print(f"{step.state.upper():5} {step.name:10} {step.detail}")
        warned = any(step.state == "warn" for step in steps)
        print(
            "intentcam check: "
            + ("FAILED" if not ok else "passed, read the warnings" if warned else "all good")
        )
    return 0 if ok else 1

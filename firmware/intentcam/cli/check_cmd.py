"""``intentcam check``: the installer's yes/no, one line per step."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from intentcam.cli.common import add_config_option, nested
from intentcam.errors import UserError

if TYPE_CHECKING:
    from intentcam.service.walk import WalkReport

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
    parser.add_argument(
        "--walk",
        type=float,
        metavar="SECONDS",
        help="then run the camera this long and print every line crossing, zone entry, shelf "
        "interaction and alert as it happens (walk through the door, reach into each shelf "
        "meanwhile), then the totals",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: `intentcam --help` and the other commands do not pay for them.
    from intentcam.service.check import Check, as_dicts

    check = Check(
        args.config, nested(camera={"source": args.source}), camera_timeout_s=args.camera_timeout
    )
    if args.walk is not None and not 1 <= args.walk <= 3600:
        raise UserError("--walk must be between 1 and 3600 seconds", exit_code=2)
    steps = check.run()
    ok = all(step.state != "fail" for step in steps)
    if not args.json:
        for step in steps:
            print(f"{step.state.upper():5} {step.name:10} {step.detail}", flush=True)
    walked = _walk(args, ok) if args.walk is not None else None
    if args.json:
        body = {"ok": ok, "steps": as_dicts(steps)}
        if walked is not None:
            body["walk"] = walked
        print(json.dumps(body))
    else:
        warned = any(step.state == "warn" for step in steps)
        print(
            "intentcam check: "
            + ("FAILED" if not ok else "passed, read the warnings" if warned else "all good")
        )
    return 0 if ok else 1


def _walk(args: argparse.Namespace, ok: bool) -> dict[str, Any] | None:
    """The walk test, after the steps passed; events are printed live unless ``--json``."""
    from intentcam.cli.common import settings_from
    from intentcam.service.walk import walk

    if not ok:
        print("intentcam check: no walk test while a step fails", file=sys.stderr)
        return None
    settings = settings_from(args, nested(camera={"source": args.source}))
    live = not args.json
    if live:
        print(f"walk test: {args.walk:g} s, walk through every line and zone and reach into "
              "every shelf now (Ctrl-C stops)")  # fmt: skip
    report = walk(
        settings,
        args.walk,
        (lambda e: print(e.describe(), flush=True)) if live else (lambda e: None),
    )
    if live:
        for line in walk_summary(report):
            print(line)
    return report.as_dict()


def walk_summary(report: WalkReport) -> list[str]:
    """The walk test's totals for a person, with a hint where nothing was counted."""
    counts = report.counts
    lines = ", ".join(f"{k} in {v['in']} out {v['out']}" for k, v in counts.lines.items())
    entries = ", ".join(f"{k} {v}" for k, v in counts.zones.items())
    out = [f"walk test: {report.frames} frames; lines: {lines or 'none'}; zone entries: "
           f"{entries or 'none'} ({report.geometry} geometry)"]  # fmt: skip
    if counts.shelves:
        shelves = "; ".join(
            f"{zone} " + ", ".join(f"{kind.replace('_', '-')} {n}" for kind, n in kinds.items())
            for zone, kinds in counts.shelves.items()
        )
        out.append(f"walk test: shelves: {shelves}")
    if report.rules or counts.alerts:
        alerts = ", ".join(f"{zone} {n}" for zone, n in counts.alerts.items())
        out.append(f"walk test: alerts: {alerts or 'none'} (rules on: "
                   f"{', '.join(report.rules) or 'none'})")  # fmt: skip
    if report.quiet_rules:
        out.append(f"walk test: alert rules in their quiet hours now, so silent: "
                   f"{', '.join(report.quiet_rules)}")  # fmt: skip
    if not report.events:
        out.append("walk test: nothing counted: is each line where people walk, each shelf "
                   "polygon over the table top or shelf face up to the products' tops? "
                   "`intentcam preview --out view.png` shows the trails")  # fmt: skip
    elif counts.shelves and not any(n for kinds in counts.shelves.values() for n in kinds.values()):
        out.append("walk test: no reach at any shelf: reach into one, arm out, while the test "
                   "runs; does the shelf polygon cover the products up to their tops as the "
                   "camera sees them?")  # fmt: skip
    return out

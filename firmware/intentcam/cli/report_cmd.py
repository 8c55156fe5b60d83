"""``intentcam report``: the store manager's daily page, from recorded or live telemetry."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date as Date
from pathlib import Path
from typing import Any

from intentcam.cli.broker_args import add_broker_arguments
from intentcam.errors import UserError

NAME = "report"


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        NAME,
        help="write the daily store report (HTML, CSV) from telemetry",
        description="Build one site's daily report from telemetry: footfall in and out per line "
        "per hour with the peak hour, store occupancy per 15 minutes, visits and time of stay "
        "per zone, intent and sentiment per zone, and the heatmaps on each camera's plate and "
        "on the floor plan. Writes DIR/index.html (self-contained: opens offline), a CSV per "
        "table and report.json. Gateway side: needs the report extra (matplotlib).",
    )
    parser.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="SOURCE",
        help="a JSON Lines file (`intentcam tail --json` or `intentcam run --sink jsonl:`), or "
        "mqtt://HOST[:PORT] to collect from the broker for --collect seconds",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="where to write")
    parser.add_argument("--date", metavar="YYYY-MM-DD",
                        help="the local day to report (default: the latest day in the data)")  # fmt: skip
    parser.add_argument("--tz", metavar="ZONE", help="IANA time zone of the store (default: "
                        "what the cameras' status says, else this machine's)")  # fmt: skip
    parser.add_argument("--names", type=Path, metavar="TOML",
                        help='map "device/line" and "device/zone" to store-level names '
                        "([lines] and [zones] tables); mapped lines add up")  # fmt: skip
    parser.add_argument("--plate", action="append", default=[], metavar="DEVICE=PNG",
                        help="a camera's background plate (intentcam preview --plate) to draw "
                        "its heatmap on; repeat per camera")  # fmt: skip
    parser.add_argument("--floor-plan", type=Path, metavar="PNG",
                        help="the store's floor plan: cameras with a floor homography are "
                        "stitched on it")  # fmt: skip
    parser.add_argument("--floor-scale", type=float, metavar="PX_PER_M",
                        help="floor plan pixels per metre (with --floor-plan)")  # fmt: skip
    parser.add_argument("--floor-origin", default="0,0", metavar="X,Y",
                        help="the floor plan pixel of floor point (0, 0) (default 0,0)")  # fmt: skip
    parser.add_argument("--long-visit-s", type=float, default=60.0, metavar="S",
                        help="the zones table gives the share of visitors staying longer "
                        "(default 60)")  # fmt: skip
    parser.add_argument("--k-min", type=int, default=3, metavar="K",
                        help="per-zone figures over fewer visitors are left blank (default 3)")  # fmt: skip
    parser.add_argument("--collect", type=float, default=30.0, metavar="SECONDS",
                        help="with mqtt://: how long to collect (default 30)")  # fmt: skip
    parser.add_argument("--session", metavar="ID",
                        help="with mqtt://: a persistent session, so what was published while "
                        "away is delivered (as a gateway collects a day)")  # fmt: skip
    add_broker_arguments(parser, broker=False)
    parser.add_argument("--json", action="store_true", help="print the report's tables as JSON")
    parser.set_defaults(handler=run)


def _plates(values: list[str]) -> dict[str, Path]:
    plates = {}
    for value in values:
        device, sep, path = value.partition("=")
        if not sep or not device or not path:
            raise UserError(f"--plate {value!r}: expected DEVICE=PNG", exit_code=2)
        if not Path(path).is_file():
            raise UserError(f"--plate {value!r}: {path} is not a file", exit_code=2)
        plates[device] = Path(path)
    return plates


def _floor_plan(args: argparse.Namespace) -> Any:
    from intentcam.report.page import FloorPlan

    if args.floor_plan is None:
        return None
    if args.floor_scale is None or args.floor_scale <= 0:
        raise UserError("--floor-plan needs --floor-scale (pixels per metre, > 0)", exit_code=2)
    try:
        x, y = (float(part) for part in args.floor_origin.split(","))
    except ValueError:
        raise UserError(
            f"--floor-origin {args.floor_origin!r}: expected X,Y", exit_code=2
        ) from None
    return FloorPlan(args.floor_plan, args.floor_scale, (x, y))


def _collect(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Messages from the broker named by ``--from mqtt://...`` for ``--collect`` seconds."""
    from intentcam.cli.broker_args import collect
    from intentcam.report.source import message_of

    args.broker = args.source.removeprefix("mqtt://").rstrip("/") or "localhost"
    topics = [f"{args.topic_root}/{args.site}/+/#"]
    messages = []
    for _, payload in collect(args, topics, args.collect, persistent=bool(args.session),
                              progress=True):  # fmt: skip
        try:
            message = message_of(json.loads(payload))
        except ValueError:
            continue
        if message is not None:
            messages.append(message)
    return messages


def run(args: argparse.Namespace) -> int:
    try:
        from intentcam.report.day import Names, build_day, days_in, pick_site
        from intentcam.report.page import write_report
    except ImportError as exc:
        raise UserError(f"intentcam report needs the report extra ({exc.name} is missing): "
                        "pip install 'intentcam[report]'") from None  # fmt: skip
    from intentcam.records import local_timezone
    from intentcam.report.source import read_jsonl

    if args.k_min < 1 or args.long_visit_s < 0 or args.collect <= 0:
        raise UserError("--k-min must be >= 1, --long-visit-s >= 0, --collect > 0", exit_code=2)
    plates, floor_plan, names = _plates(args.plate), _floor_plan(args), Names.load(args.names)
    if args.source.startswith("mqtt://"):
        messages = _collect(args)
    else:
        messages = read_jsonl(Path(args.source))
    if not messages:
        raise UserError(f"--from {args.source}: no telemetry messages in it")
    site = pick_site(messages, None if args.site == "+" else args.site)
    tz = args.tz or next(
        (m["tz"] for m in reversed(messages) if m["type"] == "status" and m.get("site") == site
         and m.get("tz")), local_timezone()
    )  # fmt: skip
    try:
        days = days_in([m for m in messages if m.get("site") == site], tz)
    except Exception as exc:  # noqa: BLE001 - ZoneInfo raises several kinds for a bad name
        raise UserError(
            f"--tz {tz!r}: not a known time zone ({type(exc).__name__})", exit_code=2
        ) from None
    if args.date is not None:
        try:
            day = Date.fromisoformat(args.date)
        except ValueError:
            raise UserError(f"--date {args.date!r}: expected YYYY-MM-DD", exit_code=2) from None
    elif days:
        day = days[-1]
    else:
        raise UserError(f"--from {args.source}: no counts windows for site {site}")
    if day not in days:
        found = ", ".join(d.isoformat() for d in days) or "none"
        raise UserError(f"--date {day}: no counts windows that day in {tz} (days found: {found})")
    report = build_day(messages, day, tz, site=site, names=names, long_visit_s=args.long_visit_s,
                       k_min=args.k_min)  # fmt: skip
    summary = write_report(report, args.out, plates=plates, floor_plan=floor_plan)
    if args.json:
        print(json.dumps(summary))
    else:
        totals = sum(t["in"] for t in report.totals.values())
        print(f"intentcam report: {summary['index']} ({site}, {day}, {len(report.devices)} "
              f"camera(s), {report.windows} window(s), {totals} in)", file=sys.stderr)  # fmt: skip
    return 0

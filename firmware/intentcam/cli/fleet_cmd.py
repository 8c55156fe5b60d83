"""``intentcam fleet``: every camera of a site in one table, from the broker's retained messages."""

from __future__ import annotations

import argparse
import json
import time

from intentcam.cli.broker_args import add_broker_arguments, collect
from intentcam.errors import UserError

NAME = "fleet"


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        NAME,
        help="one row per camera: state, versions, fps, temperature, spool, OTA",
        description="Read the retained status, health and ota of every camera under a site (or "
        "all sites) and print one row each: verdict, state, last seen, firmware, models, config "
        "hash, fps, temperature, throttling, spool depth and OTA state. Exit code 0 when every "
        "device is online and fresh, 1 when any is stale, offline, stopped or degraded, 2 on a "
        "usage or connection error.",
    )
    add_broker_arguments(parser)
    parser.add_argument(
        "--wait",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how long to collect retained messages (default 2)",
    )
    parser.add_argument(
        "--stale-after",
        type=float,
        default=90.0,
        metavar="SECONDS",
        help="a device whose latest health is older is stale (default 90: three of the default "
        "30 s health intervals)",
    )
    parser.add_argument("--json", action="store_true", help="a JSON array, one object per device")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from intentcam.telemetry.fleet import READ, Inventory, as_json, table

    if args.wait <= 0 or args.stale_after <= 0:
        raise UserError("--wait and --stale-after must be positive", exit_code=2)
    inventory = Inventory()
    topics = [f"{args.topic_root}/{args.site}/+/{kind}" for kind in READ]
    for topic, payload in collect(args, topics, args.wait):
        inventory.add(topic, payload)
    rows = inventory.rows(time.time(), args.stale_after)
    if args.json:
        print(json.dumps(as_json(rows), indent=2))
    elif rows:
        print(table(rows))
    else:
        print(f"no device found under {args.topic_root}/{args.site}/ within {args.wait:g} s")
    return 0 if rows and all(row.verdict == "ok" for row in rows) else 1

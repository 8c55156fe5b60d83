"""``intentcam send``: one command to one camera over the broker, and its reply."""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from typing import Any

from intentcam.cli.broker_args import add_broker_arguments, collect
from intentcam.errors import UserError

NAME = "send"


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        NAME,
        help="send a command to a camera (ping, set_zones, reload, test_alert, ...) and print "
        "its reply",
        description="Publish one command on {root}/{site}/{device}/cmd/{command} and wait for "
        "the camera's reply on cmd/{command}/reply (matched by the payload's id, which is "
        "made up when the payload has none). The commands and their payloads are in "
        "docs/telemetry.md. Exit code 0 when the camera did it, 1 when it refused (the reason "
        "is printed), 2 on a usage or connection error or no reply within --timeout.",
        epilog="Example: intentcam send --broker gateway.local --site store-0042 cam-07 "
        'test_alert \'{"rule": "help-at-shelf"}\'',
    )
    add_broker_arguments(parser, one_site=True)
    parser.add_argument("device", help="the camera's device.id")
    parser.add_argument("name", metavar="command", help="the command: ping, get_config, ...")
    parser.add_argument(
        "payload", nargs="?", default="{}", help="the payload, a JSON object (default {})"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the reply (default 10)",
    )
    parser.add_argument("--json", action="store_true", help="print the whole reply message")
    parser.set_defaults(handler=run)


def command_payload(name: str, text: str) -> tuple[dict[str, Any], str | int]:
    """The payload to send (with an ``id`` to find its reply by) and that id; a command the
    camera does not know or a payload that is not a JSON object is a usage error."""
    from intentcam.control.commands import COMMANDS

    if name not in COMMANDS:
        raise UserError(f"unknown command {name!r} (known: {', '.join(COMMANDS)})", exit_code=2)
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise UserError(f"payload: not JSON ({exc})", exit_code=2) from None
    if not isinstance(payload, dict):
        raise UserError("payload: must be a JSON object, e.g. {}", exit_code=2)
    payload.setdefault("id", f"send-{secrets.token_hex(4)}")
    request_id = payload["id"]
    if isinstance(request_id, bool) or not isinstance(request_id, (str, int)):
        raise UserError("payload: id must be a string or an integer", exit_code=2)
    return payload, request_id


def run(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise UserError("--timeout must be positive", exit_code=2)
    if not args.site or any(c in args.site + args.device for c in "+#/"):
        raise UserError("--site and the device must name one camera (no wildcards)", exit_code=2)
    payload, request_id = command_payload(args.name, args.payload)
    reply = _exchange(args, payload, request_id)
    if args.json:
        print(json.dumps(reply, indent=2))
    elif reply.get("ok"):
        print(f"{args.device} {args.name}: ok {json.dumps(reply.get('result'))}")
    else:
        print(f"{args.device} {args.name}: refused: {reply.get('error')}", file=sys.stderr)
    return 0 if reply.get("ok") else 1


def _exchange(args: argparse.Namespace, payload: dict[str, Any], request_id: str | int) -> Any:
    """Publish the command once the reply topic is subscribed, and wait for the reply to it."""
    base = f"{args.topic_root}/{args.site}/{args.device}/cmd/{args.name}"

    def reply_of(raw: bytes) -> dict[str, Any] | None:
        try:
            reply = json.loads(raw)
        except ValueError:
            return None  # not ours to judge: tail does that
        return reply if isinstance(reply, dict) and reply.get("id") == request_id else None

    found = collect(args, [f"{base}/reply"], args.timeout,
                    request=(base, json.dumps(payload).encode()),
                    until=lambda topic, raw: reply_of(raw) is not None)  # fmt: skip
    # collect stops at the first reply to this request, so if there is one it came last
    reply = reply_of(found[-1][1]) if found else None
    if reply is not None:
        return reply
    raise UserError(
        f"no reply from {args.site}/{args.device} to {args.name} within {args.timeout:g} s: is "
        "it online? (intentcam fleet)",
        exit_code=2,
    )

"""``intentcam tail``: subscribe to cameras' telemetry, validate it, report seq gaps and duplicates."""

from __future__ import annotations

import argparse
import json
import queue
import sys
import time
from typing import TYPE_CHECKING

from intentcam.cli.broker_args import add_broker_arguments, address, connect, make_client
from intentcam.errors import UserError

if TYPE_CHECKING:  # paho and the schemas are loaded by the command, not by `intentcam --help`
    import paho.mqtt.client as mqtt

NAME = "tail"


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        NAME,
        help="watch and check the telemetry of cameras",
        description="Subscribe to intentcam telemetry, validate every message against the v1 JSON "
        "Schemas, print it (readable, or JSON lines with --json) and report sequence "
        "gaps and duplicates per device. Exit code 0 when everything was valid and "
        "gap-free, 1 otherwise, 2 when the broker cannot be reached.",
    )
    add_broker_arguments(parser)
    parser.add_argument("--device", default="+", help="only this device")
    parser.add_argument(
        "--session",
        metavar="ID",
        help="persistent session with this client id: messages published while "
        "tail is away are delivered when it reconnects (as a gateway would)",
    )
    parser.add_argument("--count", type=int, metavar="N", help="stop after N messages")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="stop after this long")
    parser.add_argument(
        "--idle",
        type=float,
        metavar="SECONDS",
        help="stop after this long without a message while connected (time spent "
        "reconnecting does not count)",
    )
    parser.add_argument(
        "--until-stopped",
        action="store_true",
        help="stop once every device heard from has published its 'stopped' status (a clean "
        "shutdown: its spool was drained first)",
    )
    parser.add_argument(
        "--json", action="store_true", help="JSON lines: one per message, then a summary line"
    )
    parser.set_defaults(handler=run)


def _client(args: argparse.Namespace, messages: queue.Queue) -> mqtt.Client:
    client = make_client(args, args.session or "", persistent=bool(args.session))
    topic = f"{args.topic_root}/{args.site}/{args.device}/#"

    def on_connect(client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            messages.put(("error", f"broker refused the connection: {reason}"))
            return
        client.subscribe(topic, qos=1)
        messages.put(("connected", None))

    client.on_connect = on_connect
    client.on_disconnect = lambda *_: messages.put(("disconnected", None))
    client.on_message = lambda c, u, message: messages.put(("message", message))
    return client


def run(args: argparse.Namespace) -> int:
    from intentcam.telemetry.consumer import StreamChecker

    host, port = address(args.broker, args.tls)
    messages: queue.Queue = queue.Queue()
    client = _client(args, messages)
    connect(client, args, persistent=bool(args.session))
    client.loop_start()
    checker = StreamChecker()
    started = last = time.monotonic()
    connected = False
    received = 0
    stopped = StoppedDevices()
    try:
        while True:
            if args.timeout is not None and time.monotonic() - started >= args.timeout:
                break
            if args.count is not None and received >= args.count:
                break
            try:
                kind, item = messages.get(timeout=0.1)
            except queue.Empty:
                # Idle only while connected with nothing waiting: time spent blocked writing
                # to a slow reader, or waiting out a broker restart, is not a quiet stream.
                if connected and args.idle is not None and time.monotonic() - last >= args.idle:
                    break
                continue
            last = time.monotonic()
            if kind == "error":
                raise UserError(f"mqtt {host}:{port}: {item}")
            if kind in ("connected", "disconnected"):
                connected = kind == "connected"
                continue
            received += 1
            checked = checker.check(item.topic, item.payload)
            _print(checked, args.json)
            if args.until_stopped and stopped.all_after(checked.message, bool(item.retain)):
                break
    except KeyboardInterrupt:
        pass
    finally:
        client.loop_stop()
        client.disconnect()
    summary = checker.summary()
    if args.json:
        print(json.dumps({"summary": summary}), flush=True)
    else:
        for device, report in summary["devices"].items():
            print(
                f"{device}: {report['received']} spooled-stream message(s), "
                f"{report['missing_count']} missing, {report['duplicates']} duplicate(s), "
                f"{report['invalid']} invalid",
                file=sys.stderr,
            )
    return 0 if checker.clean else 1


class StoppedDevices:
    """Which of the devices heard from last said ``stopped`` (a device that comes back online
    is running again)."""

    def __init__(self) -> None:
        self._running: set[str] = set()
        self._stopped: set[str] = set()

    def all_after(self, message: object, retained: bool = False) -> bool:
        """Take in one message; True when every device heard from has stopped. A retained
        message tells of an earlier run (a device that is off): it is not a stop seen now."""
        if retained or not isinstance(message, dict):
            return False
        device = f"{message.get('site')}/{message.get('device')}"
        if message.get("type") == "status" and message.get("state") == "stopped":
            self._running.discard(device)
            self._stopped.add(device)
        elif message.get("type") == "status" or device not in self._stopped:
            self._stopped.discard(device)
            self._running.add(device)
        return bool(self._stopped) and not self._running


def _print(checked, as_json: bool) -> None:
    from intentcam.telemetry.consumer import describe

    if as_json:
        print(
            json.dumps(
                {
                    "topic": checked.topic,
                    "message": checked.message,
                    "problems": checked.problems,
                    "seq": checked.seq_event,
                }
            ),
            flush=True,
        )
        return
    line = describe(checked.message) if isinstance(checked.message, dict) else checked.topic
    if checked.seq_event in ("gap", "duplicate", "late"):
        line += f"  [{checked.seq_event}]"
    if checked.problems:
        line += "  INVALID: " + "; ".join(checked.problems[:3])
    print(line, flush=True)

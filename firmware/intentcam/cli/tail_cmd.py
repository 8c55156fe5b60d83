"""``intentcam tail``: subscribe to cameras' telemetry, validate it, report seq gaps and duplicates."""

from __future__ import annotations

import argparse
import json
import queue
import ssl
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

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
        "gap-free, 1 otherwise.",
    )
    parser.add_argument(
        "--broker",
        default="localhost",
        metavar="HOST[:PORT]",
        help="broker address (default localhost, port 1883 or 8883 with TLS)",
    )
    parser.add_argument("--protocol", choices=["5", "3.1.1"], default="5")
    parser.add_argument("--topic-root", default="intentcam/v1")
    parser.add_argument("--site", default="+", help="only this site")
    parser.add_argument("--device", default="+", help="only this device")
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument("--ca-file", type=Path, help="CA certificate(s) to trust")
    parser.add_argument("--cert-file", type=Path, help="client certificate")
    parser.add_argument("--key-file", type=Path, help="client key")
    parser.add_argument("--username")
    parser.add_argument("--password-file", type=Path, help="file whose first line is the password")
    parser.add_argument(
        "--session",
        metavar="ID",
        help="persistent session with this client id: messages published while "
        "tail is away are delivered when it reconnects (as a gateway would)",
    )
    parser.add_argument("--count", type=int, metavar="N", help="stop after N messages")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="stop after this long")
    parser.add_argument(
        "--idle", type=float, metavar="SECONDS", help="stop after this long without a message"
    )
    parser.add_argument(
        "--json", action="store_true", help="JSON lines: one per message, then a summary line"
    )
    parser.set_defaults(handler=run)


def _address(broker: str, tls: bool) -> tuple[str, int]:
    host, _, port = broker.rpartition(":") if ":" in broker else (broker, "", "")
    try:
        return host, int(port) if port else (8883 if tls else 1883)
    except ValueError:
        raise UserError(f"--broker {broker!r}: expected HOST or HOST:PORT", exit_code=2) from None


def _client(args: argparse.Namespace, messages: queue.Queue) -> mqtt.Client:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from intentcam.telemetry.mqtt import describe_connect_error

    v5 = args.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=args.session or "",
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else not args.session,
    )
    if args.username:
        password = None
        if args.password_file:
            try:
                password = args.password_file.read_text(encoding="utf-8").splitlines()[0]
            except (OSError, IndexError):
                raise UserError(f"--password-file {args.password_file}: cannot read") from None
        client.username_pw_set(args.username, password)
    if args.tls or args.ca_file:
        try:
            client.tls_set(
                ca_certs=str(args.ca_file) if args.ca_file else None,
                certfile=str(args.cert_file) if args.cert_file else None,
                keyfile=str(args.key_file) if args.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        except (OSError, ssl.SSLError) as exc:
            raise UserError(f"TLS files: {describe_connect_error(exc)}") from None
    topic = f"{args.topic_root}/{args.site}/{args.device}/#"

    def on_connect(client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            messages.put(("error", f"broker refused the connection: {reason}"))
            return
        client.subscribe(topic, qos=1)

    client.on_connect = on_connect
    client.on_message = lambda c, u, message: messages.put(("message", message))
    return client


def run(args: argparse.Namespace) -> int:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from intentcam.telemetry.consumer import StreamChecker
    from intentcam.telemetry.mqtt import describe_connect_error

    host, port = _address(args.broker, args.tls)
    messages: queue.Queue = queue.Queue()
    client = _client(args, messages)
    properties = None
    if args.protocol == "5" and args.session:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
    try:
        if args.protocol == "5":
            client.connect(host, port, clean_start=not args.session, properties=properties)
        else:
            client.connect(host, port)
    except Exception as exc:  # noqa: BLE001 - one line, whatever went wrong
        raise UserError(f"mqtt {host}:{port}: {describe_connect_error(exc)}") from None
    client.loop_start()
    checker = StreamChecker()
    started = last = time.monotonic()
    received = 0
    try:
        while True:
            now = time.monotonic()
            if args.timeout is not None and now - started >= args.timeout:
                break
            if args.idle is not None and now - last >= args.idle:
                break
            if args.count is not None and received >= args.count:
                break
            try:
                kind, item = messages.get(timeout=0.1)
            except queue.Empty:
                continue
            if kind == "error":
                raise UserError(f"mqtt {host}:{port}: {item}")
            received += 1
            last = time.monotonic()
            checked = checker.check(item.topic, item.payload)
            _print(checked, args.json)
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

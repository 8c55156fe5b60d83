"""How the gateway-side commands (``tail``, ``fleet``, ``send``) reach a broker: one set of
options, one client builder, so all speak TLS, passwords and MQTT 5 the same way."""

from __future__ import annotations

import argparse
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from intentcam.errors import UserError

if TYPE_CHECKING:  # paho is loaded by the command, not by `intentcam --help`
    import paho.mqtt.client as mqtt


def add_broker_arguments(
    parser: argparse.ArgumentParser, *, broker: bool = True, one_site: bool = False
) -> None:
    """``--broker`` (unless the command names the broker otherwise), protocol, topic root, site
    (required with ``one_site``: the command talks to one camera) and the TLS and password
    options."""
    if broker:
        parser.add_argument(
            "--broker",
            default="localhost",
            metavar="HOST[:PORT]",
            help="broker address (default localhost, port 1883 or 8883 with TLS)",
        )
    parser.add_argument("--protocol", choices=["5", "3.1.1"], default="5")
    parser.add_argument("--topic-root", default="intentcam/v1")
    if one_site:
        parser.add_argument("--site", required=True, help="the camera's device.site")
    else:
        parser.add_argument("--site", default="+", help="only this site (default: every site)")
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument("--ca-file", type=Path, help="CA certificate(s) to trust")
    parser.add_argument("--cert-file", type=Path, help="client certificate")
    parser.add_argument("--key-file", type=Path, help="client key")
    parser.add_argument("--username")
    parser.add_argument("--password-file", type=Path, help="file whose first line is the password")


def address(broker: str, tls: bool) -> tuple[str, int]:
    """``HOST[:PORT]`` with the default port for plain or TLS."""
    host, _, port = broker.rpartition(":") if ":" in broker else (broker, "", "")
    try:
        return host, int(port) if port else (8883 if tls else 1883)
    except ValueError:
        raise UserError(f"--broker {broker!r}: expected HOST or HOST:PORT", exit_code=2) from None


def make_client(
    args: argparse.Namespace, client_id: str = "", persistent: bool = False
) -> mqtt.Client:
    """A paho client with the credentials and TLS files of ``args`` (not connected yet);
    ``persistent`` keeps the session (with a ``client_id``) across reconnects."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from intentcam.telemetry.mqtt import describe_connect_error

    v5 = args.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else not persistent,
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
    return client


def connect(client: mqtt.Client, args: argparse.Namespace, persistent: bool = False) -> None:
    """Connect to ``args.broker``; a failure is one line naming the broker."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from intentcam.telemetry.mqtt import describe_connect_error

    host, port = address(args.broker, args.tls)
    try:
        if args.protocol == "5":
            properties = None
            if persistent:
                properties = Properties(PacketTypes.CONNECT)
                properties.SessionExpiryInterval = 3600
            client.connect(host, port, clean_start=not persistent, properties=properties)
        else:
            client.connect(host, port)
    except Exception as exc:  # noqa: BLE001 - one line, whatever went wrong
        raise UserError(f"mqtt {host}:{port}: {describe_connect_error(exc)}", exit_code=2) from None


def collect(
    args: argparse.Namespace,
    topics: list[str],
    seconds: float,
    *,
    persistent: bool = False,
    progress: bool = False,
    request: tuple[str, bytes] | None = None,
    until: Callable[[str, bytes], bool] | None = None,
) -> list[tuple[str, bytes]]:
    """Subscribe to ``topics`` on ``args.broker`` and return every (topic, payload) received
    within ``seconds`` (retained ones first); a refused connection is one line, exit 2.

    ``request`` (topic, payload) is published once the broker has the subscriptions (its
    answer cannot be missed); ``until`` ends the wait at the first message it accepts."""
    import queue
    import time

    from tqdm import tqdm

    host, port = address(args.broker, args.tls)
    received: queue.Queue = queue.Queue()
    client = make_client(args, getattr(args, "session", None) or "", persistent=persistent)

    def on_connect(client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            received.put(("error", f"broker refused the connection: {reason}"))
        else:
            client.subscribe([(topic, 1) for topic in topics])

    client.on_connect = on_connect
    client.on_subscribe = lambda *unused: received.put(("subscribed", None))
    client.on_message = lambda c, u, message: received.put(("message", message))
    connect(client, args, persistent=persistent)
    client.loop_start()
    found: list[tuple[str, bytes]] = []
    deadline = time.monotonic() + seconds
    bar = tqdm(total=round(seconds), desc="collecting", unit="s", leave=False,
               disable=None if progress else True)  # fmt: skip
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            bar.update(max(round(seconds - remaining) - bar.n, 0))
            try:
                kind, item = received.get(timeout=min(remaining, 0.1))
            except queue.Empty:
                continue
            if kind == "error":
                raise UserError(f"mqtt {host}:{port}: {item}", exit_code=2)
            if kind == "subscribed":
                if request is not None:
                    client.publish(*request, qos=1)
                continue
            found.append((item.topic, bytes(item.payload)))
            if until is not None and until(*found[-1]):
                break
    finally:
        bar.close()
        client.loop_stop()
        client.disconnect()
    return found

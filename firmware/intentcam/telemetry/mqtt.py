"""The broker connection: birth and last will, spool replay in order, direct messages, commands.

One network thread owns the paho client and runs everything MQTT: connecting (TLS, credentials,
MQTT 5 or 3.1.1), ``loop()``, publishing spooled messages oldest first with at most
``max_inflight`` unacknowledged, deleting them from the spool on PUBACK, and receiving commands.
Every connection uses a fresh client, so after a reconnect the spool alone decides what is sent
again (at-least-once: QoS 1 duplicates are possible, gaps are not). Reconnects back off
exponentially with jitter, so a fleet does not stampede a gateway that comes back.
"""

from __future__ import annotations

import logging
import queue
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from intentcam.config import MqttConfig
from intentcam.telemetry.messages import DELIVERY, Topics, encode
from intentcam.telemetry.spool import Spool

log = logging.getLogger(__name__)

#: Called on the network thread with (command name, payload, response topic, correlation data).
#: (name, payload, response topic, correlation data, retained) -> None
CommandHandler = Callable[[str, bytes, str | None, bytes | None, bool], None]


@dataclass(frozen=True)
class Direct:
    """A message that does not go through the spool (status, health, replies, alerts)."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    correlation: bytes | None = None
    #: ``time.monotonic()`` after which the message is no use (an alert): until then it waits
    #: for a link that is down, is sent again if a connection drops before the broker took it,
    #: and carries the time left as its MQTT 5 message expiry; after, it is dropped and counted.
    expires_at: float | None = None


def refusal_reason(reason: str, *, tls: bool) -> str:
    """The broker's CONNACK refusal, with what usually causes it."""
    hints = {
        "Not authorized": "check mqtt.username / password or the client certificate's ACL",
        "Bad user name or password": "check mqtt.username and the password",
        "Client identifier not valid": "another device may use the same mqtt.client_id",
    }
    hint = hints.get(reason)
    if reason == "Unspecified error" and not tls:
        hint = "is this a TLS port? then set mqtt.tls = true"
    if reason == "Unspecified error" and tls:
        hint = "does the broker require a client certificate (mqtt.cert_file, mqtt.key_file)?"
    return f"broker refused the connection: {reason}" + (f" ({hint})" if hint else "")


def describe_connect_error(exc: BaseException, *, tls: bool = False) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"TLS file missing: {exc.filename or exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc} (check mqtt.ca_file, cert_file, key_file)"
    if isinstance(exc, ConnectionResetError) and not tls:
        return "connection reset by the broker (is this a TLS port? then set mqtt.tls = true)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__


def make_client(config: MqttConfig, client_id: str, password: str | None) -> mqtt.Client:
    """A paho client with the configured protocol, credentials and TLS (not yet connected)."""
    v5 = config.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else True,
        reconnect_on_failure=False,
    )
    client.max_inflight_messages_set(config.max_inflight)
    if config.username:
        client.username_pw_set(config.username, password)
    if config.tls:
        client.tls_set(
            ca_certs=str(config.ca_file) if config.ca_file else None,
            certfile=str(config.cert_file) if config.cert_file else None,
            keyfile=str(config.key_file) if config.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        client.tls_insecure_set(config.tls_insecure)
    return client


def probe_broker(config: MqttConfig, client_id: str, timeout_s: float = 5.0) -> str | None:
    """Connect once and disconnect: ``None`` when the broker accepted us, else the reason."""
    outcome: dict[str, str | None] = {}

    def on_connect(
        client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        outcome["result"] = (
            f"broker refused the connection: {reason}" if reason.is_failure else None
        )

    try:
        client = make_client(config, client_id, config.read_password())
        client.on_connect = on_connect
        client.connect(config.host or "localhost", config.effective_port, keepalive=10)
        deadline = time.monotonic() + timeout_s
        while "result" not in outcome and time.monotonic() < deadline:
            client.loop(timeout=0.1)
        client.disconnect()
    except Exception as exc:  # noqa: BLE001 - reported as the check's one line
        return describe_connect_error(exc)
    return outcome.get("result", f"no answer within {timeout_s:g} s")


class MqttLink:
    """See the module docstring. ``birth()`` builds the online status at each connect."""

    def __init__(
        self,
        config: MqttConfig,
        topics: Topics,
        spool: Spool,
        *,
        birth: Callable[[], dict[str, Any]],
        last_will: Callable[[], dict[str, Any]],
        on_command: CommandHandler | None = None,
        client_id: str | None = None,
        rng: random.Random | None = None,
        retained: Callable[[], list[tuple[str, bytes]]] = list,
        subscriptions: dict[str, Callable[[bytes], None]] | None = None,
    ) -> None:
        self.config = config
        #: Other topics to follow (Home Assistant's birth), each with its handler.
        self._subscriptions = subscriptions or {}
        #: Other retained messages republished on every connect (the latest ``ota`` state), so
        #: one published while the link was down is not lost.
        self._retained = retained
        self.topics = topics
        self.spool = spool
        self._birth = birth
        self._last_will = last_will
        self._on_command = on_command
        self._client_id = client_id or config.client_id or f"intentcam-{topics.device}"
        self._password = config.read_password()
        self._rng = rng or random.Random()
        self._direct: queue.Queue[Direct] = queue.Queue(maxsize=1000)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._inflight: dict[int, int] = {}  # paho mid -> spool seq
        #: paho mid -> the direct message, until its PUBACK
        self._direct_inflight: dict[int, Direct] = {}
        self._last_sent = 0
        self._disconnected = False
        self.last_error = ""
        #: The error last logged at ERROR: a repeat is logged at DEBUG, so a broken link says
        #: why once instead of flooding the journal every retry.
        self._logged_error = ""
        self.attempts = 0
        self.restarts = 0
        self.takeovers = 0
        #: Messages with an expiry (alerts) dropped because the broker could not take them in time.
        self.expired = 0
        self._had_session = self._refused = False
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)

    # --- public, any thread -----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        self._thread.start()

    def supervise(self) -> bool:
        """Restart the network thread if it ever ended while not stopped; True if it did."""
        if self._stop.is_set() or self._thread.is_alive():
            return False
        self.restarts += 1
        log.error("mqtt: the network thread ended unexpectedly; restarting it (%d)", self.restarts)
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._thread.start()
        return True

    def _report(self, error: str) -> None:
        self.last_error = error
        where = f"mqtt {self.config.host}:{self.config.effective_port}"
        if error != self._logged_error:
            self._logged_error = error
            log.error("%s: %s (retrying with backoff)", where, error)
        else:
            log.debug("%s: %s (attempt %d)", where, error, self.attempts)

    def wake(self) -> None:
        """New messages are in the spool."""
        self._wake.set()

    def send_direct(self, message: Direct) -> bool:
        """Queue a non-spooled message; dropped (False) while disconnected, unless it has an
        expiry: then it waits for the link until it expires."""
        if not self.connected and message.expires_at is None:
            return False
        if not self._queue_direct(message):
            return False
        self._wake.set()
        return True

    def _queue_direct(self, message: Direct) -> bool:
        try:
            self._direct.put_nowait(message)
        except queue.Full:
            if message.expires_at is not None:
                self.expired += 1
                log.warning("mqtt: an alert is dropped: the queue of direct messages is full")
            return False
        return True

    def stop(self, final_status: dict[str, Any] | None = None) -> None:
        """Drain the spool (up to ``stop_flush_s``), publish ``final_status`` retained,
        disconnect."""
        flush_s = self.config.stop_flush_s
        self._wait(lambda: self.spool.stats()["depth"] == 0, flush_s)
        if final_status is not None and self.connected:
            status = DELIVERY["status"]
            payload = encode(final_status)
            self._direct.put(Direct(self.topics.of("status"), payload, status.qos, status.retained))
            self._wake.set()
            self._wait(lambda: self._direct.empty() and not self._direct_inflight, 2.0)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=flush_s + 5)
        held = [message for message in self._unsent() if message.expires_at is not None]
        if held:
            log.warning(
                "mqtt: %d alert message(s) not delivered: the broker was not reachable at stop",
                len(held),
            )

    def _unsent(self) -> list[Direct]:
        """Empty the direct queue and the unacknowledged direct messages; returns what the
        broker has not taken, in order: the unacknowledged messages that have an expiry
        (alerts; the others are not worth sending twice), then the queue."""
        unsent = [m for m in self._direct_inflight.values() if m.expires_at is not None]
        self._direct_inflight.clear()
        while True:
            try:
                unsent.append(self._direct.get_nowait())
            except queue.Empty:
                return unsent

    def _wait(self, done: Callable[[], bool], limit_s: float) -> None:
        waited = 0.0
        while self.connected and waited < limit_s and not done():
            self._stop.wait(0.05)
            waited += 0.05

    # --- network thread ---------------------------------------------------------------------

    def _new_client(self) -> mqtt.Client:
        client = make_client(self.config, self._client_id, self._password)
        status = DELIVERY["status"]
        client.will_set(
            self.topics.of("status"), encode(self._last_will()), status.qos, status.retained
        )
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_publish = self._handle_publish
        client.on_message = self._handle_message
        return client

    def _run(self) -> None:
        delay = self.config.reconnect_min_s
        while not self._stop.is_set():
            client = None
            self._had_session = self._refused = False
            self.attempts += 1
            try:
                # Built inside the try: a missing or broken TLS file is a retried failure, not
                # the end of this thread (certificates get rotated under a running daemon).
                client = self._new_client()
                client.connect(
                    self.config.host or "localhost",
                    self.config.effective_port,
                    keepalive=self.config.keepalive_s,
                )
                self._serve(client)
                if not (self._had_session or self._refused or self._stop.is_set()):
                    hint = (
                        "" if self.config.tls else " (is this a TLS port? then set mqtt.tls = true)"
                    )
                    self._report(f"the broker closed the connection before accepting it{hint}")
            except Exception as exc:  # noqa: BLE001 - every failure is reported and retried
                self._report(describe_connect_error(exc, tls=self.config.tls))
            finally:
                self._connected.clear()
                if client is not None:
                    try:
                        client.disconnect()
                    except Exception:  # noqa: BLE001
                        pass
            if self._stop.is_set():
                break
            if self._had_session:
                delay = self.config.reconnect_min_s  # it worked: start the backoff again
            wait = delay * self._rng.uniform(0.5, 1.5)
            log.info("mqtt: reconnecting in %.1f s", wait)
            self._stop.wait(wait)
            delay = min(delay * 2, self.config.reconnect_max_s)

    def _serve(self, client: mqtt.Client) -> None:
        self._inflight.clear()
        for message in self._unsent():
            self._queue_direct(message)
        self._last_sent = 0
        self._disconnected = False
        while not self._stop.is_set() and not self._disconnected:
            rc = client.loop(timeout=0.1)
            if rc != mqtt.MQTT_ERR_SUCCESS and not self._disconnected:
                raise ConnectionError(f"network loop: {mqtt.error_string(rc)}")
            if self.connected:
                self._send_direct(client)
                self._send_spooled(client)
            if self._wake.is_set():
                self._wake.clear()
        if self._stop.is_set() and self.connected:
            client.loop(timeout=0.2)

    def _handle_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self._report(refusal_reason(str(reason), tls=self.config.tls))
            self._refused = self._disconnected = True
            return
        self.last_error = self._logged_error = ""
        self._had_session = True
        log.info("mqtt: connected to %s:%d", self.config.host, self.config.effective_port)
        client.subscribe(self.topics.commands, qos=1)
        for topic in self._subscriptions:
            client.subscribe(topic, qos=1)
        birth = encode(self._birth())
        status = DELIVERY["status"]
        client.publish(self.topics.of("status"), birth, status.qos, status.retained)
        for topic, payload in self._retained():
            client.publish(topic, payload, qos=1, retain=True)
        self._connected.set()

    def _handle_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        self._connected.clear()
        self._disconnected = True
        if self._stop.is_set():
            return
        if str(reason) == "Session taken over":
            self.takeovers += 1
            self._report(
                f"another client connected with our client id {self._client_id!r} and took the "
                f"session over ({self.takeovers} times): two devices with the same device.id?"
            )
            return
        if not self._had_session:
            return  # a refused connect: its reason was reported by _handle_connect
        self.last_error = f"disconnected: {reason}"
        log.warning("mqtt: %s", self.last_error)

    def _handle_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        self._direct_inflight.pop(mid, None)
        seq = self._inflight.pop(mid, None)
        if seq is None:
            return
        if getattr(reason, "is_failure", False):
            log.error("mqtt: broker rejected message seq %d (%s); dropping it", seq, reason)
            self.spool.count_dropped()
        self.spool.ack(seq)

    def _send_spooled(self, client: mqtt.Client) -> None:
        room = self.config.max_inflight - len(self._inflight)
        if room <= 0:
            return
        for message in self.spool.pending(self._last_sent, room):
            info = client.publish(message.topic, message.payload, qos=message.qos)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return
            if message.qos == 0:
                self.spool.ack(message.seq)
            else:
                self._inflight[info.mid] = message.seq
            self._last_sent = message.seq

    def _send_direct(self, client: mqtt.Client) -> None:
        while True:
            try:
                message = self._direct.get_nowait()
            except queue.Empty:
                return
            left_s = None
            if message.expires_at is not None:
                left_s = message.expires_at - time.monotonic()
                if left_s <= 0:
                    self.expired += 1
                    log.warning(
                        "mqtt: an alert waited too long for the broker and is dropped (%s; "
                        "alerts.deliver_within_s)",
                        message.topic,
                    )
                    continue
            info = client.publish(
                message.topic,
                message.payload,
                qos=message.qos,
                retain=message.retain,
                properties=self._properties(message, left_s),
            )
            if message.qos:
                self._direct_inflight[info.mid] = message

    def _properties(self, message: Direct, left_s: float | None) -> Properties | None:
        """MQTT 5 publish properties: a command reply's correlation data, an alert's expiry
        (whole seconds left, so a broker does not hand it on after that to a subscriber who
        was away)."""
        if self.config.protocol != "5" or (message.correlation is None and left_s is None):
            return None
        properties = Properties(PacketTypes.PUBLISH)
        if message.correlation is not None:
            properties.CorrelationData = message.correlation
        if left_s is not None:
            properties.MessageExpiryInterval = max(1, int(left_s))
        return properties

    def _handle_message(
        self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage
    ) -> None:
        handler = self._subscriptions.get(message.topic)
        if handler is not None:
            try:
                handler(bytes(message.payload))
            except Exception:  # noqa: BLE001 - a handler must never take the link down
                log.exception("mqtt: handler failed for %s", message.topic)
            return
        if self._on_command is None:
            return
        name = message.topic.rsplit("/", 1)[-1]
        response_topic = correlation = None
        properties = getattr(message, "properties", None)
        if properties is not None:
            response_topic = getattr(properties, "ResponseTopic", None)
            correlation = getattr(properties, "CorrelationData", None)
        try:
            self._on_command(
                name, bytes(message.payload), response_topic, correlation, bool(message.retain)
            )
        except Exception:  # noqa: BLE001 - a command must never take the link down
            log.exception("mqtt: command handler failed for %s", message.topic)

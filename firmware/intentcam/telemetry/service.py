"""Telemetry as a sink of the frame loop: records in, schema-v1 messages out through the spool.

``counts``, ``heatmap``, ``sessions`` and ``event`` records are enveloped, given the next ``seq``
by the spool and stored durably before anything is published; the broker link (when
``mqtt.host`` is set) drains the spool. Each ``counts`` message stores the day state it carries
(store occupancy, today's totals) in the same spool transaction: :meth:`Telemetry.saved_state`
is what a restart continues from. ``status``, ``health``, ``ota``, ``reply`` and ``state`` are
sent directly; their seq counters live in the spool too, so every seq survives a restart. Without a broker the spool still keeps everything (up to its limits), so a
device installed before its gateway loses nothing. Every message is also forwarded to the local
sink (stdout or a JSON-lines file) of ``intentcam run``.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from intentcam import __version__
from intentcam.config import Settings, config_hash
from intentcam.records import Record, local_timezone
from intentcam.records import encode as encode_text
from intentcam.sinks import Sink
from intentcam.telemetry.health import HEALTH_FILE, HealthReport, write_health_file
from intentcam.telemetry.homeassistant import HomeAssistantDiscovery
from intentcam.telemetry.messages import DELIVERY, SPOOLED, Topics, body_of, envelope
from intentcam.telemetry.mqtt import CommandHandler, Direct, MqttLink
from intentcam.telemetry.spool import Spool

log = logging.getLogger(__name__)
SPOOL_FILE = "spool.sqlite"


class Telemetry:
    """See the module docstring."""

    def __init__(
        self,
        settings: Settings,
        forward: Sink,
        *,
        models: Callable[[], list[dict[str, Any]]] = list,
        occupancy: Callable[[], dict[str, Any]] | None = None,
        on_command: CommandHandler | None = None,
        degraded: Callable[[], str | None] = lambda: None,
        ota: Callable[[], dict[str, Any] | None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.forward = forward
        self.device, self.site = settings.device.id, settings.device.site
        #: Random per start: with it, (boot_id, seq) and (boot_id, window.start) never repeat.
        self.boot_id = uuid.uuid4().hex
        self.tz = settings.analytics.timezone or local_timezone()
        self.topics = Topics(settings.mqtt.topic_root, self.site, self.device)
        self.spool = Spool(
            settings.paths.state_dir / SPOOL_FILE,
            settings.spool.max_bytes,
            settings.spool.max_age_s,
            retry_s=settings.spool.retry_s,
        )
        self._models = models
        self._occupancy = occupancy or (lambda: {"people": 0, "store": 0, "zones": {}})
        self._degraded = degraded
        self._ota = ota
        self._last_ota: bytes | None = None
        self._last_state: bytes | None = None
        self.homeassistant = (
            HomeAssistantDiscovery(settings.homeassistant, self.topics)
            if settings.homeassistant.enabled
            else None
        )
        self._last_fault = ""
        self._runtime = settings.paths.runtime
        self._health_file_error = ""
        #: Alerts raised in this run (health ``alerts.fired``).
        self.alerts_fired = 0
        self.link: MqttLink | None = None
        if settings.mqtt.host:
            self.link = MqttLink(
                settings.mqtt,
                self.topics,
                self.spool,
                birth=self._birth,
                last_will=self._last_will,
                on_command=on_command,
                retained=self._retained,
                subscriptions=(
                    {self.homeassistant.birth_topic: self._homeassistant_birth}
                    if self.homeassistant is not None
                    else {}
                ),
            )

    # --- sink ------------------------------------------------------------------------------

    def write(self, record: Record, line: str | None = None) -> None:
        message_type = record.get("type")
        if message_type == "alert":  # not spooled: a late alert is no use (deliver_within_s)
            self.alerts_fired += 1
            expires_at = time.monotonic() + self.settings.alerts.deliver_within_s
            message = self._envelope("alert", body_of(record), self.spool.next_number("alert"))
            self._send(message, expires_at=expires_at)
            return
        if message_type not in SPOOLED:
            self.forward.write(record, line)
            return
        body = body_of(record)
        built: dict[str, Any] = {}

        def build(seq: int) -> bytes:
            message = self._envelope(message_type, body, seq)
            built["message"], built["line"] = message, encode_text(message)
            return built["line"].encode("utf-8")

        state = None
        if message_type == "counts" and "today" in body:
            state = json.dumps(
                {
                    "store_occupancy": body["store_occupancy"],
                    "today": body["today"],
                    "window_end": body["window"]["end"],
                }
            )
        self.spool.put(self.topics.of(message_type), SPOOLED[message_type], build, state)
        if self.spool.fault != self._last_fault:  # the disk failed or recovered: say so
            self._last_fault = self.spool.fault
            self.publish_status()
        self.forward.write(built["message"], built["line"])
        if self.link is not None:
            self.link.wake()

    def close(self) -> None:
        self.forward.close()

    def saved_state(self) -> dict[str, Any] | None:
        """What the newest spooled ``counts`` message said of the day: ``store_occupancy``,
        ``today`` (as in the message) and ``window_end``; ``None`` if nothing was saved."""
        text = self.spool.saved_state()
        try:
            saved = json.loads(text) if text else None
        except ValueError:
            log.error("spool: the saved day state is unreadable; starting the day from zero")
            return None
        return saved if isinstance(saved, dict) else None

    # --- direct messages -------------------------------------------------------------------

    def _envelope(self, message_type: str, body: dict[str, Any], seq: int | None) -> dict[str, Any]:
        return envelope(message_type, self.device, self.site, body, seq, boot_id=self.boot_id)

    def _status(self, state: str, seq: int | None) -> dict[str, Any]:
        """Every retained status (birth, ``stopped``, the last will) carries the inventory:
        firmware, models, config hash and time zone; ``online`` adds the occupancy."""
        body: dict[str, Any] = {"state": state}
        if state == "online":
            reason = self._degraded_reason()
            if reason:
                body.update(state="degraded", reason=reason)
        body.update(
            firmware=__version__,
            models=self._models(),
            config_hash=config_hash(self.settings),
            tz=self.tz,
        )
        if state == "online":
            body["occupancy"] = self._occupancy()
            ota = self._ota()
            if ota is not None:
                body["ota"] = ota
        return self._envelope("status", body, seq)

    def _last_will(self) -> dict[str, Any]:
        """Built at each connect: its ``ts`` is when the connection it outlives was made, and
        it takes the next status seq, so a consumer orders it among the births."""
        return self._status("offline", self.spool.next_number("status"))

    def _degraded_reason(self) -> str:
        return "; ".join(r for r in (self._degraded(), self.spool.fault) if r)

    def _retained(self) -> list[tuple[str, bytes]]:
        """Retained messages published again at every connect: one made while the link was down
        is not lost, and the broker's copy is never older than ours."""
        latest = [
            (self.topics.of(kind), payload)
            for kind, payload in (("ota", self._last_ota), ("state", self._last_state))
            if payload is not None
        ]
        if self.homeassistant is not None:
            latest.append((self.homeassistant.topic, self._announcement(self.homeassistant)))
        return latest

    def _announcement(self, homeassistant: HomeAssistantDiscovery) -> bytes:
        settings = self.settings
        kinds = tuple(sorted({rule.kind for rule in settings.alerts.active}))
        return homeassistant.announcement(
            [line.id for line in settings.lines],
            [zone.id for zone in settings.zones],
            kinds,
            settings.shelf_zone_ids,
        )

    def _homeassistant_birth(self, payload: bytes) -> None:
        if payload.strip() == b"online":
            log.info("home assistant (re)started: announcing the device again")
            self.announce_homeassistant()

    def announce_homeassistant(self) -> None:
        """Publish the Home Assistant discovery message now (geometry changed, HA restarted)."""
        if self.homeassistant is not None:
            self.publish_retained(self.homeassistant.topic, self._announcement(self.homeassistant))

    def withdraw_homeassistant(self) -> bool:
        """Remove the device from Home Assistant (``decommission``): an empty retained discovery
        message, and no announcement again in this run. False when discovery is off."""
        homeassistant, self.homeassistant = self.homeassistant, None
        if homeassistant is None:
            return False
        self.publish_retained(homeassistant.topic, b"")
        log.warning("decommissioned: removed from home assistant (%s)", homeassistant.topic)
        return True

    def _birth(self) -> dict[str, Any]:
        return self._status("online", self.spool.next_number("status"))

    def _send(
        self,
        message: dict[str, Any],
        topic: str | None = None,
        correlation: bytes | None = None,
        expires_at: float | None = None,
    ) -> bytes:
        """A message that skips the spool: to the local sink, then to the broker if connected
        (or, with ``expires_at``, when it connects before then: :class:`Direct`), on its type's
        topic (unless ``topic`` says otherwise) with its type's QoS and retain.

        Returns its bytes. Text is encoded with backslashreplace: replies echo what a sender
        wrote, and a stray surrogate must never break the encoding.
        """
        line = encode_text(message).encode("utf-8", "backslashreplace").decode("utf-8")
        self.forward.write(message, line)
        payload = line.encode("utf-8")
        delivery = DELIVERY[message["type"]]
        if self.link is not None:
            self.link.send_direct(
                Direct(
                    topic or self.topics.of(message["type"]),
                    payload,
                    delivery.qos,
                    delivery.retained,
                    correlation,
                    expires_at,
                )
            )
        return payload

    def alert_delivery(self) -> dict[str, int] | None:
        """For health, while alert rules are on: alerts ``fired`` in this run and those
        ``expired`` (the broker could not take them within ``alerts.deliver_within_s``)."""
        if not self.settings.alerts.active:
            return None
        return {
            "fired": self.alerts_fired,
            "expired": self.link.expired if self.link is not None else 0,
        }

    def send_reply(
        self,
        command: str,
        body: dict[str, Any],
        *,
        response_topic: str | None = None,
        correlation: bytes | None = None,
    ) -> None:
        """Answer a command: to ``response_topic`` (MQTT 5) or ``cmd/{command}/reply``."""
        message = self._envelope("reply", body, self.spool.next_number("status"))
        topic = response_topic or self.topics.reply(
            command[:64].replace("/", "_").replace("+", "_").replace("#", "_")
        )
        self._send(message, topic, correlation)

    def publish_status(self) -> None:
        """Publish the current status again (retained): after a model swap or rollback."""
        self._send(self._birth())

    def publish_ota(self, body: dict[str, Any]) -> None:
        """The OTA state on the retained ``ota`` topic (and to the local sink)."""
        message = self._envelope("ota", body, self.spool.next_number("ota"))
        self._last_ota = self._send(message)

    def publish_state(self, body: dict[str, Any]) -> None:
        """The live ``state`` (occupancy now, today's totals), retained: a consumer that
        subscribes later gets it at once."""
        message = self._envelope("state", body, self.spool.next_number("state"))
        self._last_state = self._send(message)

    def publish_retained(self, topic: str, payload: bytes) -> None:
        """Publish a retained message outside the device's topics (Home Assistant discovery);
        an empty payload deletes it from the broker."""
        if self.link is not None:
            self.link.send_direct(Direct(topic, payload, 1, True))

    def publish_health(self, body: dict[str, Any]) -> None:
        """The ``health`` message, and the same body in the local health file that
        ``intentcam check`` reads (so a dead broker link is still seen on the device)."""
        message = self._envelope("health", body, self.spool.next_number("health"))
        # Retained (DELIVERY): ``intentcam fleet`` reads every device's latest health at once.
        self._send(message)
        reason = self._degraded_reason()
        report = HealthReport(
            written=time.time(),
            pid=os.getpid(),
            state="degraded" if reason else "online",
            reason=reason,
            health=body,
        )
        try:
            write_health_file(self._runtime, report)
            self._health_file_error = ""
        except OSError as exc:
            if str(exc) != self._health_file_error:
                log.warning("cannot write the health file in %s: %s", self._runtime, exc)
            self._health_file_error = str(exc)

    @property
    def broker_connected(self) -> bool:
        return self.link is not None and self.link.connected

    @property
    def broker_error(self) -> str:
        """Why the broker link is down ("" when it is up or not configured)."""
        if self.link is None or self.link.connected:
            return ""
        return self.link.last_error or "connecting"

    def supervise(self) -> None:
        """Restart the broker link's thread if it ever ended (called from the frame loop)."""
        if self.link is not None:
            self.link.supervise()

    def start(self) -> None:
        if self.link is not None:
            self.link.start()
        log.info(
            "telemetry: spool %s (%d pending), broker %s",
            self.spool.path,
            self.spool.stats()["depth"],
            self.settings.mqtt.host or "not configured",
        )

    def stop(self) -> None:
        """Publish ``stopped`` (retained), let the spool drain briefly, close."""
        if self.link is not None:
            self.link.stop(self._status("stopped", self.spool.next_number("status")))
        try:  # a stopped daemon has no health: ``intentcam check`` must not read an old one
            (self._runtime / HEALTH_FILE).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot remove the health file: %s", exc)
        pending = self.spool.stats()["depth"]
        if pending:
            log.info("telemetry: %d message(s) stay in the spool for the next start", pending)
        self.spool.close()

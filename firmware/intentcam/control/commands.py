"""Commands on ``.../cmd/{name}``: validated on arrival, applied by the frame loop, always answered.

| command          | payload (JSON object, ``id`` optional and echoed)     | effect                          |
|------------------|-------------------------------------------------------|---------------------------------|
| ``ping``         | ``{}`` or empty                                       | replies with uptime             |
| ``get_config``   | ``{}`` or empty                                       | effective config, secrets as *** |
| ``set_zones``    | ``{"lines": [...], "zones": [...]}`` (both required)  | validated, saved atomically to the state dir, applied live; refused when it takes away a zone an alert rule names or adds a shelf zone without the pose model installed |
| ``reset_counters`` | ``{}`` or empty                                     | line totals and store occupancy to 0 |
| ``reload``       | ``{}`` or empty                                       | re-reads config file and zones; applies lines, zones, log level; names what needs a restart; refused while a shelf zone lacks the pose model |
| ``ota_install``  | ``{"url": "https://...", "sha256": "<64 hex>"}``      | downloads, verifies, self-tests and hot-swaps a model bundle; progress on the retained ``ota`` topic |
| ``decommission`` | ``{}`` or empty                                       | removes the device from Home Assistant (empty retained discovery); counting goes on until the daemon is stopped |
| ``test_alert``   | ``{"rule": "<id>"}`` (optional: the first rule on)    | publishes an ``alert`` of that rule marked ``test`` (docs/alerts.md) |

Anything else gets ``ok: false`` and an ``error`` naming the problem (unknown command, payload too
large, not UTF-8, invalid JSON, not an object, unknown or mistyped field) and changes nothing.
Replies go to ``cmd/{name}/reply``, or to the MQTT 5 response topic with the correlation data.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intentcam.analytics.alerts import zone_for_test_alert
from intentcam.config import AlertRuleConfig, Settings, alert_zone_problem, load_config, redacted
from intentcam.control.geometry_store import (
    Geometry,
    GeometryLimits,
    GeometryStore,
    live_geometry_refusal,
    parse_geometry,
    shelf_model_refusal,
)
from intentcam.errors import ConfigError

log = logging.getLogger(__name__)

COMMANDS = (
    "ping",
    "get_config",
    "set_zones",
    "reset_counters",
    "reload",
    "ota_install",
    "decommission",
    "test_alert",
)
#: Commands whose payload has fields of its own (the others take none).
WITH_FIELDS = ("set_zones", "ota_install", "test_alert")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
#: Starts an install: (url, sha256) -> why it cannot start, or None.
OtaInstall = Callable[[str, str], "str | None"]
#: Sections whose changes ``reload`` applies live; any other change needs a restart.
LIVE_SECTIONS = {"lines", "zones", "logging"}


@dataclass(frozen=True)
class Reply:
    command: str
    ok: bool
    request_id: str | int | None = None
    result: Any = None
    error: str | None = None
    response_topic: str | None = None
    correlation: bytes | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"command": self.command, "ok": self.ok, "id": self.request_id}
        if self.ok:
            body["result"] = self.result
        else:
            body["error"] = self.error
        return body


def warn_alert_zones(settings: Settings) -> None:
    """Zones set live that no longer fit the alert rules (the config changed since): the rule
    watches nothing there, which is logged, not fatal."""
    clash = alert_zone_problem(settings.alerts, settings.zones)
    if clash:
        log.warning("%s in the zones set live (zones.json): that rule stays quiet there", clash)


class _Invalid(Exception):
    pass


#: Deepest JSON nesting a command may have (set_zones needs 4); deeper is refused before parsing,
#: so no payload can exhaust the parser's recursion.
MAX_DEPTH = 8
#: JSON values (strings, numbers, ...) one command may hold.
MAX_VALUES = 20000
#: Commands waiting for the frame loop; more get a "busy" reply.
QUEUE_SIZE = 64


def nesting_exceeds(text: str, limit: int) -> bool:
    """Whether JSON ``text`` nests arrays/objects deeper than ``limit`` (strings skipped)."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def check_text(value: Any, path: str = "payload", budget: list[int] | None = None) -> None:
    """Every string (and key) must be text a reply can carry: no lone UTF-16 surrogates."""
    budget = budget if budget is not None else [MAX_VALUES]
    budget[0] -= 1
    if budget[0] < 0:
        raise _Invalid(f"more than {MAX_VALUES} values in the payload")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Invalid(f"{path}: not valid text (a lone UTF-16 surrogate)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, f"{path} key", budget)
            check_text(item, f"{path}.{str(key)[:32]}", budget)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_text(item, f"{path}.{index}", budget)


@dataclass
class TokenBucket:
    """At most ``rate`` commands per second on average and ``burst`` at once."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    _tokens: float = -1.0
    _at: float = 0.0

    def take(self) -> bool:
        now = self.clock()
        if self._tokens < 0:
            self._tokens, self._at = float(self.burst), now
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


@dataclass
class ControlPlane:
    """Validates commands (network thread) and applies them (frame-loop thread)."""

    settings: Settings
    store: GeometryStore
    send: Callable[[Reply], None]
    config_path: Path | None = None
    #: The command-line overrides the daemon runs with; ``reload`` applies them again.
    overrides: dict[str, Any] = field(default_factory=dict)
    max_bytes: int = 64 * 1024
    #: Receives new geometry / reset requests on the frame-loop thread.
    apply_geometry: Callable[[Geometry], None] = lambda geometry: None
    reset_counters: Callable[[], None] = lambda: None
    #: Withdraws the device from Home Assistant; returns the reply's result.
    decommission: Callable[[], dict[str, Any]] = lambda: {"homeassistant": "not enabled"}
    #: Starts a model update; ``None`` when the daemon has no OTA agent.
    ota_install: OtaInstall | None = None
    #: Publishes a test alert of the rule (frame-loop thread); returns the reply's result.
    send_test_alert: Callable[[AlertRuleConfig, str], dict[str, Any]] = lambda rule, zone: {}
    started: float = field(default_factory=time.monotonic)
    _queue: queue.Queue[tuple[str, Any, Reply]] = field(
        default_factory=lambda: queue.Queue(maxsize=QUEUE_SIZE)
    )
    _bucket: TokenBucket | None = None

    def __post_init__(self) -> None:
        telemetry = self.settings.telemetry
        self._bucket = TokenBucket(telemetry.max_commands_per_s, telemetry.command_burst)

    @property
    def geometry(self) -> Geometry:
        return Geometry(lines=self.settings.lines, zones=self.settings.zones)

    # --- network thread ---------------------------------------------------------------------

    def handle(
        self,
        name: str,
        payload: bytes,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        retained: bool = False,
    ) -> None:
        """Validate one command; answer at once or queue it for :meth:`apply_pending`.

        Never raises: whatever goes wrong is answered as an error and logged.
        """
        context = Reply(name, False, correlation=correlation)
        try:
            response_topic = self._check_response_topic(name, response_topic)
            context = Reply(name, False, response_topic=response_topic, correlation=correlation)
            if retained:
                raise _Invalid(
                    "retained commands are refused (they would run again on every reconnect): "
                    "publish without retain and clear the retained message"
                )
            assert self._bucket is not None
            if not self._bucket.take():
                raise _Invalid(
                    "busy: more than "
                    f"{self.settings.telemetry.max_commands_per_s:g} commands per second; retry"
                )
            request_id, data = self._parse(name, payload)
            context = Reply(
                name, False, request_id, response_topic=response_topic, correlation=correlation
            )
            self._dispatch(name, data, context)
        except _Invalid as problem:
            self._reply(context, error=str(problem))
        except Exception as exc:  # noqa: BLE001 - a command must never take the daemon down
            log.exception("command %s failed", name[:64])
            self._reply(context, error=f"{name[:64]} failed: {type(exc).__name__}")

    def _check_response_topic(self, name: str, topic: str | None) -> str | None:
        """The MQTT 5 response topic if it is allowed; else :class:`_Invalid` (answered on the
        device's own reply topic). Never a wildcard, never inside this device's own tree."""
        if topic is None:
            return None
        mqtt = self.settings.mqtt
        base = f"{mqtt.topic_root}/{self.settings.device.site}/{self.settings.device.id}/"
        if len(topic) > 256 or any(char in topic for char in "+#\x00"):
            raise _Invalid("response topic refused: wildcards or over 256 characters")
        if topic.startswith(base) or topic == base.rstrip("/"):
            raise _Invalid("response topic refused: it lies in this device's own topic tree")
        if mqtt.response_prefix is None or not topic.startswith(mqtt.response_prefix):
            raise _Invalid(
                "response topic refused: not under mqtt.response_prefix "
                f"({mqtt.response_prefix or 'unset: replies go to cmd/<name>/reply'})"
            )
        return topic

    def _dispatch(self, name: str, data: dict[str, Any], context: Reply) -> None:
        if name == "ping":
            self._reply(
                context,
                result={"pong": True, "uptime_s": round(time.monotonic() - self.started, 1)},
            )
        elif name == "get_config":
            self._reply(context, result=redacted(self.settings))
        elif name == "set_zones":
            telemetry = self.settings.telemetry
            limits = GeometryLimits(telemetry.max_zones, telemetry.max_lines, telemetry.max_points)
            geometry, invalid = parse_geometry(data, limits)
            if invalid or geometry is None:
                raise _Invalid(f"invalid set_zones: {invalid}")
            refused = live_geometry_refusal(self.settings, geometry)
            if refused:
                raise _Invalid(f"set_zones refused: {refused}")
            # Persisted here, on the network thread: the frame loop only swaps the geometry.
            try:
                self.store.save(geometry)
            except OSError as exc:
                raise _Invalid(f"set_zones not saved: {exc.strerror or exc}") from None
            self._enqueue(("set_zones", geometry, context))
        elif name == "ota_install":
            self._ota_install(data, context)
        elif name == "test_alert":
            self._enqueue(("test_alert", self._test_alert_target(data), context))
        else:
            self._enqueue((name, None, context))

    def _enqueue(self, item: tuple[str, Any, Reply]) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            raise _Invalid(f"busy: {QUEUE_SIZE} commands wait for the frame loop; retry") from None

    def _parse(self, name: str, payload: bytes) -> tuple[str | int | None, dict[str, Any]]:
        if len(payload) > self.max_bytes:
            raise _Invalid(
                f"payload of {len(payload)} bytes exceeds the {self.max_bytes}-byte limit"
            )
        if name not in COMMANDS:
            raise _Invalid(f"unknown command {name[:64]!r} (known: {', '.join(COMMANDS)})")
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise _Invalid("payload is not UTF-8") from None
        if not text.strip():
            return None, {}
        if nesting_exceeds(text, MAX_DEPTH):
            raise _Invalid(f"JSON nested deeper than {MAX_DEPTH} levels")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise _Invalid(f"invalid JSON: {exc}") from None
        check_text(data)
        if not isinstance(data, dict):
            raise _Invalid(f"payload must be a JSON object, not {type(data).__name__}")
        request_id = data.pop("id", None)
        if request_id is not None and (
            isinstance(request_id, bool) or not isinstance(request_id, (str, int))
        ):
            raise _Invalid("id must be a string or an integer")
        if name not in WITH_FIELDS and data:
            raise _Invalid(
                f"unknown field(s) for {name}: {', '.join(sorted(map(str, data)))[:200]}"
            )
        return request_id, data

    def _test_alert_target(self, data: dict[str, Any]) -> tuple[AlertRuleConfig, str]:
        """The rule ``test_alert`` names (or the first rule on) and the zone its alert names."""
        rule_id = data.pop("rule", None)
        if data:
            unknown = ", ".join(sorted(map(str, data)))[:200]
            raise _Invalid(f"unknown field(s) for test_alert: {unknown}")
        if rule_id is not None and not isinstance(rule_id, str):
            raise _Invalid("rule must be the id of a rule in [alerts] (a string)")
        active = self.settings.alerts.active
        if not active:
            raise _Invalid("no alert rule is on: add one to [alerts] (docs/alerts.md)")
        if rule_id is None:
            rule = active[0]
        else:
            rules = {rule.id: rule for rule in active}
            if rule_id not in rules:
                raise _Invalid(f"rule: no rule {rule_id[:64]!r} is on (on: {', '.join(rules)})")
            rule = rules[rule_id]
        zone = zone_for_test_alert(rule, self.settings.zones)
        if zone is None:
            raise _Invalid(f"rule {rule.id!r} watches no zone yet: draw a zone of its kind first")
        return rule, zone

    def _ota_install(self, data: dict[str, Any], context: Reply) -> None:
        url, sha256 = data.pop("url", None), data.pop("sha256", None)
        error: str | None = None
        if data:
            error = f"unknown field(s) for ota_install: {', '.join(sorted(map(str, data)))[:200]}"
        elif not isinstance(url, str) or not re.match(r"^https?://[^\s]{1,2000}$", url):
            error = "ota_install needs url: an http:// or https:// address of the bundle"
        elif not isinstance(sha256, str) or not SHA256_HEX.match(sha256):
            error = "ota_install needs sha256: the bundle's sha256 as 64 lowercase hex digits"
        elif self.ota_install is None:
            error = "this daemon has no OTA agent"
        else:
            error = self.ota_install(url, sha256)
        if error:
            self._reply(context, error=error)
        else:
            self._reply(context, result={"accepted": True, "state": "downloading"})

    def _reply(self, context: Reply, *, result: Any = None, error: str | None = None) -> None:
        reply = Reply(
            context.command,
            error is None,
            context.request_id,
            result,
            error,
            context.response_topic,
            context.correlation,
        )
        if error:
            log.warning("command %s refused: %s", context.command[:64], error)
        self.send(reply)

    # --- frame-loop thread ------------------------------------------------------------------

    def apply_pending(self) -> None:
        """Apply queued commands; called by the frame loop between frames."""
        while True:
            try:
                name, argument, context = self._queue.get_nowait()
            except queue.Empty:
                return
            try:
                if name == "set_zones":
                    self._set_zones(argument)
                    self._reply(
                        context, result={"lines": len(argument.lines), "zones": len(argument.zones)}
                    )
                elif name == "reset_counters":
                    self.reset_counters()
                    self._reply(context, result={"reset": True})
                elif name == "reload":
                    self._reply(context, result=self._reload())
                elif name == "decommission":
                    self._reply(context, result=self.decommission())
                elif name == "test_alert":
                    self._reply(context, result=self.send_test_alert(*argument))
            except _Invalid as problem:
                self._reply(context, error=str(problem))
            except OSError as exc:
                self._reply(context, error=f"{name} failed: {exc.strerror or exc}")
            except Exception as exc:  # noqa: BLE001 - the frame loop must survive any command
                log.exception("command %s failed", name)
                self._reply(context, error=f"{name} failed: {type(exc).__name__}")

    def _set_zones(self, geometry: Geometry) -> None:
        self.settings.lines, self.settings.zones = geometry.lines, geometry.zones
        self.apply_geometry(geometry)
        log.info(
            "set_zones: %d line(s), %d zone(s) applied", len(geometry.lines), len(geometry.zones)
        )

    def _reload(self) -> dict[str, Any]:
        try:
            fresh = load_config(self.config_path, overrides=self.overrides)
        except ConfigError as exc:
            raise _Invalid("reload refused, config invalid: " + "; ".join(exc.problems)) from None
        stored = self.store.load()
        if stored is not None:
            fresh.lines, fresh.zones = stored.lines, stored.zones
            warn_alert_zones(fresh)
        before, after = redacted(self.settings), redacted(fresh)
        changed = sorted(key for key in after if after[key] != before.get(key))
        geometry = Geometry(lines=fresh.lines, zones=fresh.zones)
        refused = shelf_model_refusal(fresh, geometry.zones)
        if refused:
            raise _Invalid(f"reload refused: {refused}")
        self.settings.lines, self.settings.zones = geometry.lines, geometry.zones
        self.settings.logging = fresh.logging
        logging.getLogger().setLevel(fresh.logging.level)
        self.apply_geometry(geometry)
        return {
            "applied": sorted(LIVE_SECTIONS),
            "restart_required": [key for key in changed if key not in LIVE_SECTIONS],
        }

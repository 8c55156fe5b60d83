"""Home Assistant MQTT discovery: the camera as one device with its sensors (opt-in).

One retained device-level discovery message, ``<prefix>/device/<node>/config``, lists every
sensor as a component (``cmps``): people in view, store occupancy, each zone's occupancy, each
shelf zone's reaches today and each line's ``in`` and ``out`` today (``total_increasing``: a daily
reset or ``reset_counters`` starts a new cycle), and, as diagnostics, fps, SoC temperature and
spool depth. The sensors read the retained ``state`` and ``health`` topics through value
templates, so nothing is published twice; availability follows the retained ``status``
(``online`` or ``degraded`` is available; the last will, ``stopped`` and ``offline`` are not).

The message goes out at every connect, whenever Home Assistant announces itself on
``<prefix>/status`` (``online``), and when lines or zones change; a component whose line or zone is
gone is sent once as ``{"p": "<its platform>"}`` alone, which is how Home Assistant removes it.
The ``decommission`` command sends an empty retained payload, which removes the device.

With staff-assist rules in ``[alerts]``, the ``alerts`` topic is one ``event`` entity ("Staff
alert"): each alert becomes a Home Assistant event whose ``event_type`` is the rule's kind
(``shelf_help``, ``long_queue``), with the rule, zone, reason, alert id and ``test`` (true on
a test alert, ``cmd/test_alert``) as attributes, so an automation can send it to the staff's
phones.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from intentcam import __version__
from intentcam.config import HomeAssistantConfig
from intentcam.telemetry.messages import Topics

AVAILABLE = "{{ 'online' if value_json.state in ['online', 'degraded'] else 'offline' }}"

#: The alert fields a Home Assistant event carries (``event_type`` is the alert's ``kind``).
ALERT_EVENT = (
    "{{ {'event_type': value_json.kind, 'rule': value_json.rule, 'zone': value_json.zone, "
    "'reason': value_json.reason, 'alert_id': value_json.alert_id, "
    "'test': value_json.test | default(false)} | tojson }}"
)


def node_id(device: str) -> str:
    """The device's id in discovery topics and unique ids (``[a-zA-Z0-9_-]`` only)."""
    return "intentcam_" + re.sub(r"[^A-Za-z0-9_-]", "_", device)


def _key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


@dataclass
class HomeAssistantDiscovery:
    """Builds the discovery message of one device and remembers which components it announced."""

    config: HomeAssistantConfig
    topics: Topics
    #: Component id -> platform of what the last announcement listed.
    _announced: dict[str, str] = field(default_factory=dict)

    @property
    def node(self) -> str:
        return node_id(self.topics.device)

    @property
    def topic(self) -> str:
        """Where the retained discovery message lives."""
        return f"{self.config.discovery_prefix}/device/{self.node}/config"

    @property
    def birth_topic(self) -> str:
        """Home Assistant says ``online`` here when it (re)starts: announce again then."""
        return f"{self.config.discovery_prefix}/status"

    def _sensor(
        self, key: str, name: str, source: str, template: str, **extra: Any
    ) -> tuple[str, dict[str, Any]]:
        return key, {
            "p": "sensor",
            "name": name,
            "unique_id": f"{self.node}_{key}",
            "state_topic": self.topics.of(source),
            "value_template": template,
            **extra,
        }

    def components(
        self,
        lines: list[str],
        zones: list[str],
        alert_kinds: tuple[str, ...] = (),
        shelves: Sequence[str] = (),
    ) -> dict[str, dict[str, Any]]:
        """Every sensor for these lines and zones (``shelves`` of them shelf zones, which also
        count today's reaches), and the alert event entity when rules of ``alert_kinds`` are
        on, by component id."""
        people = {"state_class": "measurement", "unit_of_measurement": "people"}
        diagnostic = {"entity_category": "diagnostic", "state_class": "measurement"}
        found = [
            self._sensor("people", "People in view", "state", "{{ value_json.people }}", **people),
            self._sensor(
                "store_occupancy",
                "Store occupancy",
                "state",
                "{{ value_json.store_occupancy }}",
                **people,
            ),
        ]
        for zone in zones:
            found.append(
                self._sensor(
                    f"zone_{_key(zone)}_occupancy",
                    f"Zone {zone} occupancy",
                    "state",
                    f"{{{{ value_json.zones[{json.dumps(zone)}] }}}}",
                    **people,
                )
            )
        for shelf in shelves:
            found.append(
                self._sensor(
                    f"zone_{_key(shelf)}_reaches_today",
                    f"Shelf {shelf} reaches today",
                    "state",
                    f"{{{{ value_json.today.zones.reaches[{json.dumps(shelf)}] }}}}",
                    state_class="total_increasing",
                    unit_of_measurement="reaches",
                )
            )
        for line in lines:
            for direction in ("in", "out"):
                found.append(
                    self._sensor(
                        f"line_{_key(line)}_{direction}_today",
                        f"Line {line} {direction} today",
                        "state",
                        # ``in`` is a Jinja keyword: subscript, never ``.in``
                        f"{{{{ value_json.today.lines[{json.dumps(line)}]['{direction}'] }}}}",
                        state_class="total_increasing",
                        unit_of_measurement="people",
                    )
                )
        found += [
            self._sensor(
                "fps",
                "Frames per second",
                "health",
                "{{ value_json.fps }}",
                unit_of_measurement="fps",
                **diagnostic,
            ),  # fmt: skip
            self._sensor(
                "temperature",
                "SoC temperature",
                "health",
                "{{ value_json.temperature_c if value_json.temperature_c is not none "
                "else 'unknown' }}",
                device_class="temperature",
                unit_of_measurement="°C",
                **diagnostic,
            ),
            self._sensor(
                "spool_depth",
                "Spool depth",
                "health",
                "{{ value_json.spool.depth }}",
                unit_of_measurement="messages",
                **diagnostic,
            ),  # fmt: skip
        ]
        if alert_kinds:
            found.append(("alerts", {
                "p": "event",
                "name": "Staff alert",
                "unique_id": f"{self.node}_alerts",
                "state_topic": self.topics.of("alert"),
                "event_types": list(alert_kinds),
                "value_template": ALERT_EVENT,
            }))  # fmt: skip
        return dict(found)

    def announcement(
        self,
        lines: list[str],
        zones: list[str],
        alert_kinds: tuple[str, ...] = (),
        shelves: Sequence[str] = (),
    ) -> bytes:
        """The discovery message for these lines, zones, alert kinds and shelf zones; components
        announced before and gone now are included as ``{"p": platform}`` so Home Assistant
        removes them."""
        components = self.components(lines, zones, alert_kinds, shelves)
        for gone in sorted(self._announced.keys() - components.keys()):
            components[gone] = {"p": self._announced[gone]}
        self._announced = {key: value["p"] for key, value in components.items() if len(value) > 1}
        message = {
            "dev": {
                "ids": [self.node],
                "name": self.config.name or self.topics.device,
                "mf": "intentcam",
                "mdl": "intentcam retail camera",
                "sw": __version__,
                "sn": self.topics.device,
            },
            "o": {"name": "intentcam", "sw": __version__},
            "availability": [{"topic": self.topics.of("status"), "value_template": AVAILABLE}],
            "qos": 1,
            "cmps": components,
        }
        return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

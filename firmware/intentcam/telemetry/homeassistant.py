"""Home Assistant MQTT discovery: the camera as one device with its sensors (opt-in).

One retained device-level discovery message, ``<prefix>/device/<node>/config``, lists every
sensor as a component (``cmps``): people in view, store occupancy, each zone's occupancy, each
line's ``in`` and ``out`` today (``total_increasing``: a daily reset or ``reset_counters`` starts a
new cycle), and, as diagnostics, fps, SoC temperature and spool depth. The sensors read the
retained ``state`` and ``health`` topics through value templates, so nothing is published twice;
availability follows the retained ``status`` (``online`` or ``degraded`` is available; the last
will, ``stopped`` and ``offline`` are not).

The message goes out at every connect, whenever Home Assistant announces itself on
``<prefix>/status`` (``online``), and when lines or zones change; a component whose line or zone is
gone is sent once as ``{"p": "sensor"}`` alone, which is how Home Assistant removes it. The
``decommission`` command sends an empty retained payload, which removes the device.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from intentcam import __version__
from intentcam.config import HomeAssistantConfig
from intentcam.telemetry.messages import Topics

AVAILABLE = "{{ 'online' if value_json.state in ['online', 'degraded'] else 'offline' }}"


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
    _announced: set[str] = field(default_factory=set)

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

    def components(self, lines: list[str], zones: list[str]) -> dict[str, dict[str, Any]]:
        """Every sensor for these lines and zones, by component id."""
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
        return dict(found)

    def announcement(self, lines: list[str], zones: list[str]) -> bytes:
        """The discovery message for these lines and zones; components announced before and gone
        now are included as ``{"p": "sensor"}`` so Home Assistant removes them."""
        components: dict[str, dict[str, Any]] = self.components(lines, zones)
        for gone in sorted(self._announced - components.keys()):
            components[gone] = {"p": "sensor"}
        self._announced = {key for key, value in components.items() if len(value) > 1}
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

"""Telemetry messages (schema v1): topics, the common envelope, heatmap encoding, validation.

Every message carries ``v``, ``device``, ``site``, ``boot_id`` (random per daemon start), ``seq``
and ``ts``; windowed ones carry their ``window``. ``seq`` of ``counts``/``heatmap``/``sessions``/``event`` comes from the spool (monotonic per
device across restarts, so a gap is visible); ``health``, ``state``, ``ota``, ``alert`` and
``status``/``reply`` messages are not spooled and count on their own (persisted too), so they
never make a false gap in the data stream.
"""

from __future__ import annotations

import base64
import json
import time
import zlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from intentcam.records import encode as encode_text
from intentcam.records import iso

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Delivery:
    """How one message type travels: the one place its QoS and retain flag are decided."""

    qos: int
    retained: bool
    #: Stored in the spool first (and numbered by the device seq).
    spooled: bool
    #: When it is published (for the docs and the AsyncAPI document).
    when: str


DELIVERY = {
    "counts": Delivery(1, False, True, "Every analytics.window_s (60 s): footfall, occupancy, "
                       "zones, and the day's totals."),
    "heatmap": Delivery(1, False, True, "Every analytics.heatmap_window_s (300 s)."),
    "sessions": Delivery(1, False, True, "Sessions that ended in a window, at its end."),
    "event": Delivery(1, False, True, "Opt-in (telemetry.events): each line crossing, zone "
                      "entry or exit and shelf interaction as it is counted."),
    "state": Delivery(1, True, False, "Occupancy now and today's totals, on change (at most every "
                      "telemetry.state_interval_s) and at start."),
    "health": Delivery(0, True, False, "Every telemetry.health_interval_s (30 s)."),
    "status": Delivery(1, True, False, "Birth at every connect, after OTA transitions, stopped at a "
                       "clean exit; the last will (offline) after a crash."),
    "reply": Delivery(1, False, False, "The answer to a command (or on the MQTT 5 response topic)."),
    "ota": Delivery(1, True, False, "Every model-update transition."),
    "alert": Delivery(1, False, False, "When a staff-assist rule of [alerts] fires. Not spooled "
                      "to disk: while the broker is away it waits in memory for "
                      "alerts.deliver_within_s, its MQTT 5 message expiry, then is "
                      "dropped and counted in health (help minutes late finds nobody)."),
}  # fmt: skip
#: Message types that go through the spool, with their QoS.
SPOOLED = {kind: delivery.qos for kind, delivery in DELIVERY.items() if delivery.spooled}
MESSAGE_TYPES = tuple(DELIVERY)
#: Topic names that differ from their message type: one ``event`` per message on ``events``.
TOPIC_NAMES = {"event": "events", "alert": "alerts"}
HEATMAP_SCALE = 0.1  # heatmap cells are sent in tenths of a track-second


def now_iso() -> str:
    return iso(time.time())


@dataclass(frozen=True)
class Topics:
    """``{root}/{site}/{device}/...`` for one device."""

    root: str
    site: str
    device: str

    @property
    def base(self) -> str:
        return f"{self.root}/{self.site}/{self.device}"

    def of(self, message_type: str) -> str:
        return f"{self.base}/{TOPIC_NAMES.get(message_type, message_type)}"

    @property
    def commands(self) -> str:
        return f"{self.base}/cmd/+"

    def reply(self, command: str) -> str:
        return f"{self.base}/cmd/{command}/reply"


def encode(message: dict[str, Any]) -> bytes:
    """Compact JSON bytes (the same text as :func:`intentcam.records.encode`)."""
    return encode_text(message).encode("utf-8")


def envelope(
    message_type: str,
    device: str,
    site: str,
    body: dict[str, Any],
    seq: int | None = None,
    *,
    boot_id: str,
) -> dict[str, Any]:
    message: dict[str, Any] = {"v": SCHEMA_VERSION, "device": device, "site": site}
    message["boot_id"] = boot_id
    if seq is not None:
        message["seq"] = seq
    message["ts"] = now_iso()
    message["type"] = message_type
    message.update(body)
    return message


def encode_heatmap(cells: list[list[float]] | np.ndarray) -> dict[str, Any]:
    """Track-seconds grid -> ``zlib+base64`` of a row-major integer grid in tenths of a second."""
    grid = np.rint(np.asarray(cells, dtype=np.float64) / HEATMAP_SCALE)
    dtype = np.uint16 if grid.max(initial=0) <= np.iinfo(np.uint16).max else np.uint32
    raw = grid.astype(dtype).astype(np.dtype(dtype).newbyteorder("<")).tobytes()
    return {
        "encoding": "zlib+base64",
        "dtype": np.dtype(dtype).name,
        "scale": HEATMAP_SCALE,
        "data": base64.b64encode(zlib.compress(raw, 9)).decode("ascii"),
    }


def decode_heatmap(message: dict[str, Any]) -> np.ndarray:
    """The grid of a heatmap message in track-seconds, shape (rows, columns)."""
    columns, rows = message["grid"]
    raw = zlib.decompress(base64.b64decode(message["data"]))
    values = np.frombuffer(raw, dtype=np.dtype(message["dtype"]).newbyteorder("<"))
    return values.reshape(rows, columns).astype(np.float64) * float(message["scale"])


def body_of(record: dict[str, Any]) -> dict[str, Any]:
    """An analytics record (see intentcam.aggregator) as a message body."""
    body = {key: value for key, value in record.items() if key != "type"}
    if record["type"] == "heatmap":
        body.update(encode_heatmap(body.pop("cells")))
    return body


def schema(message_type: str) -> dict[str, Any]:
    """The JSON Schema of one message type, as shipped in telemetry/schemas."""
    text = (
        resources.files("intentcam.telemetry")
        .joinpath(f"schemas/{message_type}.schema.json")
        .read_text(encoding="utf-8")
    )
    return dict(json.loads(text))


@cache
def validator(message_type: str) -> Any:
    """A jsonschema validator for one message type (schemas ship in telemetry/schemas; they may
    refer to each other by file name, as ``status`` does to ``ota``)."""
    from jsonschema import Draft202012Validator, FormatChecker
    from referencing import Registry, Resource

    schemas = {name: schema(name) for name in MESSAGE_TYPES}
    registry: Registry[Any] = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in schemas.values()
    )
    checked = schemas[message_type]
    Draft202012Validator.check_schema(checked)
    return Draft202012Validator(checked, registry=registry, format_checker=FormatChecker())


def validation_errors(message: Any) -> list[str]:
    """Why a message does not match its schema (empty when it does)."""
    if not isinstance(message, dict) or message.get("type") not in MESSAGE_TYPES:
        return ["not a JSON object with a known 'type'"]
    errors = validator(message["type"]).iter_errors(message)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(message)'}: {error.message}"
        for error in errors
    ]

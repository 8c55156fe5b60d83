"""The consuming side: validate what a camera publishes and account for every sequence number.

Per device, the spooled stream (``counts``, ``heatmap``, ``sessions``, ``event``) must be
gap-free: each ``seq`` is the previous + 1. A seq seen twice is a duplicate (allowed by QoS 1); a
jump leaves the skipped numbers *missing* until they arrive late. ``health``, ``status``,
``state``, ``ota`` and ``reply`` count on their own (QoS 0 health may be lost, retained ones are
replaced), so they are only checked against their schema.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from intentcam.analytics.shelf import KINDS
from intentcam.telemetry.messages import SPOOLED, validation_errors

#: Sequence numbers remembered per device for duplicate detection.
MEMORY = 100_000


@dataclass
class DeviceStream:
    received: int = 0
    invalid: int = 0
    duplicates: int = 0
    highest: int = 0
    missing: set[int] = field(default_factory=set)
    _seen: set[int] = field(default_factory=set)
    _order: deque[int] = field(default_factory=deque)

    def observe(self, seq: int) -> str:
        """``ok``, ``first``, ``duplicate``, ``late`` (fills a gap) or ``gap``."""
        self.received += 1
        if seq in self._seen:
            self.duplicates += 1
            return "duplicate"
        self._seen.add(seq)
        self._order.append(seq)
        if len(self._order) > MEMORY:
            self._seen.discard(self._order.popleft())
        if self.highest == 0:
            self.highest = seq
            return "first"
        if seq in self.missing:
            self.missing.discard(seq)
            return "late"
        if seq > self.highest + 1:
            self.missing.update(range(self.highest + 1, seq))
            self.highest = seq
            return "gap"
        self.highest = max(self.highest, seq)
        return "ok"

    def report(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "invalid": self.invalid,
            "duplicates": self.duplicates,
            "highest_seq": self.highest,
            "missing": sorted(self.missing)[:100],
            "missing_count": len(self.missing),
        }


@dataclass
class Checked:
    topic: str
    message: Any
    problems: list[str]
    seq_event: str | None


@dataclass
class StreamChecker:
    """Validates messages and tracks sequence numbers per device."""

    devices: dict[str, DeviceStream] = field(default_factory=dict)
    other_invalid: int = 0

    def check(self, topic: str, payload: bytes) -> Checked:
        try:
            message = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            self.other_invalid += 1
            return Checked(topic, None, [f"not JSON: {exc}"], None)
        problems = validation_errors(message)
        device_key = (
            f"{message.get('site')}/{message.get('device')}" if isinstance(message, dict) else "?"
        )
        stream = self.devices.setdefault(device_key, DeviceStream())
        if problems:
            stream.invalid += 1
        seq_event = None
        if (
            isinstance(message, dict)
            and message.get("type") in SPOOLED
            and isinstance(message.get("seq"), int)
        ):
            seq_event = stream.observe(message["seq"])
        return Checked(topic, message, problems, seq_event)

    def summary(self) -> dict[str, Any]:
        return {
            "devices": {key: stream.report() for key, stream in self.devices.items()},
            "unparsable": self.other_invalid,
        }

    @property
    def clean(self) -> bool:
        return self.other_invalid == 0 and all(
            stream.invalid == 0 and not stream.missing for stream in self.devices.values()
        )


def describe(message: dict[str, Any]) -> str:
    """One readable line for a message."""
    kind = message.get("type")
    head = f"{message.get('site')}/{message.get('device')} {kind}"
    if "seq" in message:
        head += f" #{message['seq']}"
    if kind == "counts":
        lines = " ".join(
            f"{name} in {c['in']} out {c['out']}" for name, c in message["lines"].items()
        )
        zones = " ".join(
            f"{name} {z['occupancy']['now']}{_hands(z.get('interactions'))}"
            for name, z in message["zones"].items()
        )
        return (
            f"{head} {message['window']['start']}..{message['window']['end'][11:]} "
            f"people {message['people']['now']} store {message['store_occupancy']} "
            f"{lines} {zones}".rstrip()
        )
    if kind == "sessions":
        dwell = [s["dwell_s"] for s in message["sessions"]]
        return f"{head} {len(dwell)} session(s), dwell up to {max(dwell, default=0):.0f} s"
    if kind == "heatmap":
        return f"{head} grid {message['grid'][0]}x{message['grid'][1]} ({message['space']})"
    if kind == "health":
        alerts = message.get("alerts")
        return (
            f"{head} fps {message['fps']} cpu {message['cpu_percent']}% rss "
            f"{message['rss_mb']} MB spool {message['spool']['depth']} "
            f"source {message['source']['state']} broker {message['broker']}"
            + (f" alerts {alerts['fired']} ({alerts['expired']} expired)" if alerts else "")
        )
    if kind == "status":
        return f"{head} {message.get('state')}"
    if kind == "state":
        lines = " ".join(
            f"{name} in {c['in']} out {c['out']}" for name, c in message["today"]["lines"].items()
        )
        return f"{head} people {message['people']} store {message['store_occupancy']} today {lines}"
    if kind == "event":
        where = message.get("line") or message.get("zone")
        if message["event"] == "interaction":
            what = f"{message['interaction']} {message['duration_s']} s"
        else:
            what = message.get("direction", "")
        return f"{head} {message['at']} {message['event']} {where} {what}".rstrip()
    if kind == "alert":
        return f"{head} {message['at']} {message['rule']} at {message['zone']}: {message['reason']}"
    if kind == "reply":
        outcome = "ok" if message.get("ok") else f"error: {message.get('error')}"
        return f"{head} {message.get('command')} {outcome}"
    return head


def _hands(interactions: dict[str, Any] | None) -> str:
    """A shelf zone's interactions in a window: `` (reach 2 inspect 1 put_back 0 engaged 0.5)``."""
    if not interactions:
        return ""
    counts = [f"{kind} {interactions[kind]}" for kind in KINDS]
    if "engagement" in interactions:
        counts.append(f"engaged {interactions['engagement']}")
    return " (" + " ".join(counts) + ")"

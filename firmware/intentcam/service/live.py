"""What an installer standing in front of the camera sees happen: the walk test
(``intentcam check --walk``) and the live counts of ``intentcam calibrate``.

Both read the daemon's own records, from the same pipeline as the daemon, with event records on
and their tokens off: every line crossing (also one completed when a track ends past the line),
zone entry, shelf interaction (reach, inspect, put-back, with how long it lasted) and alert is
reported as a :class:`LiveEvent`, token-free, the moment its record is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from intentcam.analytics.shelf import KINDS
from intentcam.config import LineConfig, Settings, ZoneConfig, with_sections
from intentcam.records import Record, wall_of


@dataclass(frozen=True)
class LiveEvent:
    """One thing counted, ``at_s`` seconds after ``origin``; ``kind`` is ``line`` (``what`` is
    the direction, in or out), ``zone`` (an entry), ``shelf`` (``what`` is reach, inspect or
    put_back, lasting ``duration_s``) or ``alert`` (``what`` is the rule, ``reason`` why it
    fired). ``id`` is the line or zone."""

    at_s: float
    kind: str
    id: str
    what: str = ""
    duration_s: float | None = None
    reason: str | None = None

    def describe(self) -> str:
        """One line for a person: ``   4.2 s  shelf table: reach, 0.8 s``."""
        if self.kind == "line":
            text = f"line {self.id}: {self.what}"
        elif self.kind == "zone":
            text = f"zone {self.id}: entered"
        elif self.kind == "shelf":
            text = f"shelf {self.id}: {self.what.replace('_', '-')}, {self.duration_s:.1f} s"
        else:
            text = f"alert {self.what} at {self.id}: {self.reason}"
        return f"{self.at_s:6.1f} s  {text}"

    def as_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value not in (None, "")}


def live_event(record: Record, origin: float) -> LiveEvent | None:
    """The event a record tells of (``None`` for windows, sessions, heatmaps and the rest);
    ``origin`` is the wall-clock second its ``at_s`` counts from."""
    if record.get("type") == "alert":
        at = round(wall_of(record["at"]) - origin, 1)
        return LiveEvent(at, "alert", record["zone"], record["rule"], reason=record["reason"])
    if record.get("type") != "event":
        return None
    at = round(wall_of(record["at"]) - origin, 1)
    kind = record.get("event")
    if kind == "crossing":
        return LiveEvent(at, "line", record["line"], record["direction"])
    if kind == "zone_entry":
        return LiveEvent(at, "zone", record["zone"])
    if kind == "interaction":
        return LiveEvent(at, "shelf", record["zone"], record["interaction"], record["duration_s"])
    return None


@dataclass
class LiveCounts:
    """Totals of :class:`LiveEvent`: per line in and out, per zone entries, per shelf zone its
    interactions, per zone the alerts raised there."""

    lines: dict[str, dict[str, int]] = field(default_factory=dict)
    zones: dict[str, int] = field(default_factory=dict)
    shelves: dict[str, dict[str, int]] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, lines: list[LineConfig], zones: list[ZoneConfig]) -> LiveCounts:
        """Zero for every line and zone, so the ones nothing happened at are listed too."""
        return cls(
            lines={line.id: {"in": 0, "out": 0} for line in lines},
            zones={zone.id: 0 for zone in zones},
            shelves={zone.id: dict.fromkeys(KINDS, 0) for zone in zones if zone.kind == "shelf"},
        )

    def add(self, event: LiveEvent) -> None:
        if event.kind == "line" and event.id in self.lines:
            self.lines[event.id][event.what] += 1
        elif event.kind == "zone" and event.id in self.zones:
            self.zones[event.id] += 1
        elif event.kind == "shelf" and event.id in self.shelves:
            self.shelves[event.id][event.what] += 1
        elif event.kind == "alert":
            self.alerts[event.id] = self.alerts.get(event.id, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def watching(settings: Settings) -> Settings:
    """``settings`` with event records on and their tokens off: what :class:`LiveSink` reads."""
    return with_sections(settings, telemetry={"events": True, "event_tokens": False})


class LiveSink:
    """A sink that tells ``report`` of every event among the records written to it and drops
    the rest (nothing is spooled or published)."""

    def __init__(self, report: Callable[[LiveEvent], None], origin: float) -> None:
        self._report = report
        self._origin = origin

    def write(self, record: Record, line: str | None = None) -> None:
        event = live_event(record, self._origin)
        if event is not None:
            self._report(event)

    def close(self) -> None:
        return None

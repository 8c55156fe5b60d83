"""The aggregator: analytics events in, one record per closed time window out.

Fed with events (line crossings, zone entries and visits, occupancy samples, ended sessions with
their sentiment vectors) it keeps the window's counts and time-weighted levels and, whenever
time passes a window boundary, emits the closed window's records: ``counts`` (every
``window_s``), ``sessions`` (sessions that ended in the window, batched) and ``heatmap`` (every
``heatmap_window_s``). Windows are aligned to the wall clock (a 60 s window runs from :00 to :00)
so that a gateway can line up cameras; a window without frames (a camera outage) is still
emitted, with ``frames: 0``, so gaps are visible rather than silent. Aggregates describing fewer
than ``k_min`` people are suppressed. The store occupancy from door lines lives here too, with
its daily local reset, and so do today's totals (per line and per zone since that reset), which
every ``counts`` record carries so the telemetry can persist them with it: a restart continues
from :class:`DayState` instead of from zero. A window the run did not cover from its start (the
first after a start) or to its end (the last, at a stop) is marked ``partial`` with the instant
its frames began (``covered_start``). With ``events`` on, every crossing and zone entry and exit
counted is also reported as an ``event`` record, at the moment it is counted, and so is every
shelf interaction as it ends. ``shelf`` zones also report their interactions per window
(reaches, inspects, put-backs, and the share of completed visits with one, withheld below
``k_min`` visits).
"""

from __future__ import annotations

import copy
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from intentcam.analytics.heatmap import Heatmap
from intentcam.analytics.lines import IN, OUT, Crossing
from intentcam.analytics.scene import EndedSession, FrameEvents
from intentcam.analytics.shelf import KINDS, ZoneInteraction
from intentcam.analytics.zones import Visit
from intentcam.config import AnalyticsConfig, LineConfig, ZoneConfig
from intentcam.records import Record, iso, wall_of
from intentcam.sentiment.vector import mean_vector

#: At most this many empty windows are emitted after a long gap (the rest are summarised).
MAX_EMPTY_WINDOWS = 1440


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else 0.0


@dataclass
class Level:
    """Time-weighted statistics of a count (people in view, zone occupancy) over a window."""

    now: int = 0
    maximum: int = 0
    weighted: float = 0.0
    seconds: float = 0.0

    def add(self, value: int, dt: float) -> None:
        self.now = value
        self.maximum = max(self.maximum, value)
        self.weighted += value * dt
        self.seconds += dt

    def report(self) -> dict[str, float | int]:
        mean = self.weighted / self.seconds if self.seconds > 0 else float(self.now)
        return {"now": self.now, "max": self.maximum, "mean": round(mean, 2)}

    def restart(self) -> None:
        self.maximum, self.weighted, self.seconds = self.now, 0.0, 0.0


@dataclass
class _ZoneWindow:
    kind: str
    entries: int = 0
    occupancy: Level = field(default_factory=Level)
    dwell: list[float] = field(default_factory=list)
    #: Sentiment vectors of the sessions that ended in the window having visited the zone.
    sentiments: list[dict[str, Any]] = field(default_factory=list)
    #: Shelf zones: interactions that ended in the window, by kind.
    interactions: Counter[str] = field(default_factory=Counter)
    #: Shelf zones: completed visits with at least one interaction.
    engaged: int = 0


@dataclass
class DayState:
    """What the store knows since the daily reset: door-line occupancy and today's totals.

    ``since`` is the wall-clock time of the reset that began the day: a saved state whose
    ``since`` is not the current day's is stale and not restored.
    """

    since: float
    store_occupancy: int = 0
    lines: dict[str, dict[str, int]] = field(default_factory=dict)
    zones: dict[str, int] = field(default_factory=dict)
    #: Reaches into each shelf zone (shelf zones only).
    reaches: dict[str, int] = field(default_factory=dict)

    def today(self) -> dict[str, Any]:
        """The ``today`` object of ``counts`` and ``state`` messages (``zones.reaches`` only
        with shelf zones)."""
        zones: dict[str, Any] = {"entries": dict(self.zones)}
        if self.reaches:
            zones["reaches"] = dict(self.reaches)
        return {
            "since": iso(self.since),
            "lines": {line: dict(counts) for line, counts in self.lines.items()},
            "zones": zones,
        }

    @classmethod
    def from_saved(cls, saved: Any) -> DayState | None:
        """The day a saved ``counts`` state describes (``store_occupancy`` and ``today`` as in
        the message); ``None`` when it is not one (never raises)."""
        try:
            today = saved["today"]
            since = wall_of(today["since"])
            lines = {
                str(line): {IN: int(c[IN]), OUT: int(c[OUT])} for line, c in today["lines"].items()
            }
            zones = {str(zone): int(n) for zone, n in today["zones"]["entries"].items()}
            # Saved before shelves had day totals, or without shelf zones: none.
            reaches = {str(zone): int(n) for zone, n in today["zones"].get("reaches", {}).items()}
            return cls(since, max(0, int(saved["store_occupancy"])), lines, zones, reaches)
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    def live(self, lines: list[str], zones: list[str], shelves: list[str]) -> dict[str, Any]:
        """A ``state`` body before the first frame: nobody seen yet, the day as saved, for the
        configured ``lines`` and ``zones`` (``shelves`` of them shelf zones)."""
        day = DayState(
            self.since,
            self.store_occupancy,
            {line: self.lines.get(line, {IN: 0, OUT: 0}) for line in lines},
            {zone: self.zones.get(zone, 0) for zone in zones},
            {zone: self.reaches.get(zone, 0) for zone in shelves},
        )
        return {"people": 0, "store_occupancy": day.store_occupancy, "today": day.today(),
                "zones": dict.fromkeys(zones, 0)}  # fmt: skip


class DailyReset:
    """The next local reset time (e.g. 04:00) as a wall-clock timestamp."""

    def __init__(self, at: str, tz_name: str | None) -> None:
        hour, minute = (int(part) for part in at.split(":"))
        self._hour, self._minute = hour, minute
        self._tz = ZoneInfo(tz_name) if tz_name else None

    @classmethod
    def from_config(cls, config: AnalyticsConfig) -> DailyReset:
        return cls(config.occupancy_reset, config.timezone)

    def _at_reset_time(self, wall: float, days: int) -> datetime:
        local = (
            datetime.fromtimestamp(wall, self._tz)
            if self._tz
            else datetime.fromtimestamp(wall).astimezone()
        )
        # replace() after the day shift: the reset keeps its local hour across a DST change
        return (local + timedelta(days=days)).replace(
            hour=self._hour, minute=self._minute, second=0, microsecond=0
        )

    def next_after(self, wall: float) -> float:
        candidate = self._at_reset_time(wall, 0)
        if candidate.timestamp() <= wall:
            candidate = self._at_reset_time(wall, 1)
        return candidate.timestamp()

    def last_at_or_before(self, wall: float) -> float:
        """The reset that began the day ``wall`` is in."""
        candidate = self._at_reset_time(wall, 0)
        if candidate.timestamp() > wall:
            candidate = self._at_reset_time(wall, -1)
        return candidate.timestamp()


class Aggregator:
    """Time windows over one view's analytics events; see the module docstring.

    ``heatmap`` accumulates track-seconds and is closed every ``heatmap_window_s``;
    ``wall_origin`` fixes the wall-clock time of the first frame (a clip replayed faster than
    real time still gets windows of clip time); ``k_min`` is the smallest number of people an
    aggregate may describe; ``restored`` is the day state a previous run saved (used only if it
    is from the same day); ``events`` turns on ``event`` records, with the session token in
    them only when ``event_tokens`` is on.
    """

    def __init__(
        self,
        config: AnalyticsConfig,
        lines: list[LineConfig],
        zones: list[ZoneConfig],
        heatmap: Heatmap,
        *,
        k_min: int = 3,
        wall_origin: float | None = None,
        restored: DayState | None = None,
        events: bool = False,
        event_tokens: bool = False,
    ) -> None:
        self.config = config
        self.k_min = k_min
        self.heatmap = heatmap
        self._wall_origin = wall_origin
        self._wall_offset: float | None = None
        self._reset = DailyReset.from_config(config)
        self._next_reset = 0.0
        self._restored = restored
        #: Whether the first frame's day took the restored state (``None``: no frame yet).
        self.restored: bool | None = None
        self.day = DayState(since=0.0)
        self._events_on, self._event_tokens = events, event_tokens
        self._events: list[Record] = []
        self._covered_start: float | None = None
        self._ended_sessions: list[Record] = []
        self._short_sessions = 0
        self._window_start: float | None = None
        self._heatmap_start: float | None = None
        self._frames = 0
        self.people = Level()
        #: Whether shelf interactions are being measured: off, a shelf zone's window carries no
        #: ``interactions`` (not measured) rather than zeros (measured, none).
        self.interactions_measured = True
        self.replace_geometry(lines, zones)

    def replace_geometry(self, lines: list[LineConfig], zones: list[ZoneConfig]) -> None:
        """New lines and zones (``set_zones``): their counts for the current window start again
        from zero; sessions, heatmap and windows continue."""
        self._door_lines = {line.id for line in lines if line.door}
        self._line_counts = {line.id: {IN: 0, OUT: 0} for line in lines}
        self._zones = {zone.id: _ZoneWindow(zone.kind) for zone in zones}
        self.day.lines = {line.id: self.day.lines.get(line.id, {IN: 0, OUT: 0}) for line in lines}
        self.day.zones = {zone.id: self.day.zones.get(zone.id, 0) for zone in zones}
        self.day.reaches = {zone.id: self.day.reaches.get(zone.id, 0) for zone in zones
                            if zone.kind == "shelf"}  # fmt: skip

    @property
    def store_occupancy(self) -> int:
        return self.day.store_occupancy

    @property
    def window_start(self) -> float | None:
        """Wall-clock start of the open ``counts`` window (``None`` before the first frame)."""
        return self._window_start

    # --- time ---------------------------------------------------------------------------

    def wall(self, timestamp: float) -> float:
        """Wall-clock seconds of a monotonic frame timestamp.

        The offset is fixed at the first frame (``wall_origin`` or now), so a clip processed
        faster than real time still gets windows of clip time, and NTP steps do not reorder them.
        """
        if self._wall_offset is None:
            origin = self._wall_origin if self._wall_origin is not None else time.time()
            self._wall_offset = origin - timestamp
        return timestamp + self._wall_offset

    def advance(self, timestamp: float) -> list[Record]:
        """Move time to a new frame: close every window it passed, apply the daily reset."""
        wall = self.wall(timestamp)
        records = self._roll(wall)
        if wall >= self._next_reset:
            self._start_day(wall)
        return records

    def _start_day(self, wall: float) -> None:
        """At the first frame, continue the restored day if it is today's; at each daily
        reset after that, start the new day from zero."""
        since = self._reset.last_at_or_before(wall)
        if self.restored is None:
            restored, self._restored = self._restored, None
            self.restored = restored is not None and restored.since == since
            if restored is not None and self.restored:
                self.day.store_occupancy = restored.store_occupancy
                self.day.lines = {line: restored.lines.get(line, counts)
                                  for line, counts in self.day.lines.items()}  # fmt: skip
                self.day.zones = {zone: restored.zones.get(zone, 0) for zone in self.day.zones}
                self.day.reaches = {zone: restored.reaches.get(zone, 0)
                                    for zone in self.day.reaches}  # fmt: skip
        else:
            self._zero_day()
        self.day.since = since
        self._next_reset = self._reset.next_after(wall)

    def _zero_day(self) -> None:
        self.day.store_occupancy = 0
        self.day.lines = {line: {IN: 0, OUT: 0} for line in self.day.lines}
        self.day.zones = dict.fromkeys(self.day.zones, 0)
        self.day.reaches = dict.fromkeys(self.day.reaches, 0)

    # --- events -------------------------------------------------------------------------

    def frame(self, events: FrameEvents) -> None:
        """One frame's events and occupancy samples."""
        self._frames += 1
        self.people.add(len(events.tokens), events.dt)
        for crossing in events.crossings:
            self.crossing(crossing)
        for zone_id in events.entries:
            self._zones[zone_id].entries += 1
            self._event("zone_entry", events.timestamp, zone=zone_id)
        for visit in events.visits:
            self.visit(visit)
        for zone_id, occupancy in events.zone_occupancy.items():
            self._zones[zone_id].occupancy.add(occupancy, events.dt)
        self.interactions(events.interactions)
        self.heatmap.add(events.tokens, events.feet.image, events.dt, events.feet.plane)

    def crossing(self, crossing: Crossing) -> None:
        if crossing.line in self._line_counts:
            self._line_counts[crossing.line][crossing.direction] += 1
            self._event(
                "crossing",
                crossing.timestamp,
                crossing.token,
                line=crossing.line,
                direction=crossing.direction,
            )
        if crossing.line in self._door_lines:
            self.day.store_occupancy = max(
                0, self.day.store_occupancy + (1 if crossing.direction == IN else -1)
            )

    def visit(self, visit: Visit) -> None:
        if visit.zone in self._zones:
            self._zones[visit.zone].dwell.append(visit.dwell)
            self._zones[visit.zone].engaged += visit.interactions > 0
            self._event(
                "zone_exit", visit.left, visit.token, zone=visit.zone, dwell_s=round(visit.dwell, 2)
            )

    def interactions(self, items: list[ZoneInteraction]) -> None:
        """Shelf interactions that ended (at the moment they ended)."""
        for item in items:
            if item.zone in self._zones:
                self._zones[item.zone].interactions[item.event.kind] += 1
                self._event("interaction", item.event.end, item.token, zone=item.zone,
                            interaction=item.event.kind,
                            duration_s=round(item.event.end - item.event.start, 2))  # fmt: skip

    def _event(self, kind: str, timestamp: float, token: str = "", **fields: Any) -> None:
        if not self._events_on:
            return
        event: Record = {"type": "event", "event": kind, "at": iso(self.wall(timestamp)), **fields}
        if self._event_tokens and token:
            event["token"] = token
        self._events.append(event)

    def take_events(self) -> list[Record]:
        """The ``event`` records counted since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def session(self, ended: EndedSession, sentiment: dict[str, Any] | None) -> None:
        """A session that ended, with its sentiment vector (``None`` for a short one)."""
        for crossing in ended.crossings:
            self.crossing(crossing)
        self.interactions(ended.interactions)
        for visit in ended.visits:
            self.visit(visit)
        if ended.short:
            self._short_sessions += 1
        if ended.summary is None or sentiment is None:
            return
        for zone in ended.summary["zones"]:
            if zone in self._zones:
                self._zones[zone].sentiments.append(sentiment)
        self._ended_sessions.append(
            {
                "token": ended.end.token,
                "start": iso(self.wall(ended.started)),
                "end": iso(self.wall(ended.last)),
                "reason": ended.end.reason,
                **ended.summary,
                "sentiment": sentiment,
            }
        )

    def reset_counters(self) -> None:
        """Zero the window's line counts, today's totals and the store occupancy
        (``reset_counters``)."""
        self._line_counts = {line: {IN: 0, OUT: 0} for line in self._line_counts}
        self._zero_day()

    def live_state(self) -> dict[str, Any]:
        """Store occupancy and today's totals including the open window (the ``state`` topic)."""
        day = copy.deepcopy(self.day)
        self._add_window_to(day)
        return {"store_occupancy": self.store_occupancy, "today": day.today()}

    def _add_window_to(self, day: DayState) -> None:
        """Add the open window's line counts, zone entries and shelf reaches to ``day``."""
        for line, counts in self._line_counts.items():
            for direction, count in counts.items():
                day.lines[line][direction] += count
        for zone, stats in self._zones.items():
            day.zones[zone] += stats.entries
            if zone in day.reaches:
                day.reaches[zone] += stats.interactions["reach"]

    # --- windows ------------------------------------------------------------------------

    @staticmethod
    def _window_of(wall: float, length: float) -> float:
        return math.floor(wall / length) * length

    def _roll(self, wall: float) -> list[Record]:
        records: list[Record] = []
        length = self.config.window_s
        if self._window_start is None:
            self._window_start = self._window_of(wall, length)
            self._heatmap_start = self._window_of(wall, self.config.heatmap_window_s)
            self._covered_start = wall
            return records
        emitted = 0
        while wall >= self._window_start + length:
            records.extend(self._close_window(self._window_start, self._window_start + length))
            self._window_start += length
            emitted += 1
            if emitted >= MAX_EMPTY_WINDOWS and wall >= self._window_start + length:
                self._window_start = self._window_of(wall, length)  # skip the rest of the gap
        assert self._heatmap_start is not None
        heat_length = self.config.heatmap_window_s
        if wall >= self._heatmap_start + heat_length:
            records.append(
                self._close_heatmap(self._heatmap_start, self._heatmap_start + heat_length)
            )
            self._heatmap_start = self._window_of(wall, heat_length)
        return records

    def _close_zone(self, stats: _ZoneWindow) -> dict[str, Any]:
        """The zone's report for the window that closes, and a fresh start for the next."""
        dwell: dict[str, Any] = {"count": len(stats.dwell)}
        if len(stats.dwell) >= self.k_min:
            dwell.update(
                p50=round(percentile(stats.dwell, 50), 2),
                p90=round(percentile(stats.dwell, 90), 2),
                max=round(max(stats.dwell), 2),
            )
        else:
            dwell["suppressed"] = len(stats.dwell) > 0
        report = {
            "kind": stats.kind,
            "entries": stats.entries,
            "occupancy": stats.occupancy.report(),
            "dwell": dwell,
        }
        if len(stats.sentiments) >= self.k_min:  # a mean over fewer sessions is not published
            report["sentiment"] = mean_vector(stats.sentiments)
        if stats.kind == "shelf" and self.interactions_measured:
            report["interactions"] = self._shelf_report(stats)
        stats.interactions, stats.engaged = Counter(), 0
        stats.entries = 0
        stats.dwell = []
        stats.sentiments = []
        stats.occupancy.restart()
        return report

    def _shelf_report(self, stats: _ZoneWindow) -> dict[str, Any]:
        """A shelf zone's interactions that ended in the window (counts, like ``entries``), and
        the share of its completed visits with one: withheld (``engagement_suppressed``) when
        fewer than ``k_min`` visits completed, like the dwell percentiles."""
        visits = len(stats.dwell)
        report: dict[str, Any] = {kind: stats.interactions[kind] for kind in KINDS}
        report["visits"] = visits
        if visits >= self.k_min:
            report["engaged_visits"] = stats.engaged
            report["engagement"] = round(stats.engaged / visits, 3)
        else:
            report["engagement_suppressed"] = visits > 0
        return report

    def _coverage(self, start: float, end: float) -> dict[str, Any]:
        """``partial`` and ``covered_start`` of a window this run did not see whole: the first
        after a start, or one cut short at a stop."""
        covered = max(start, self._covered_start or start)
        self._covered_start = None
        if covered <= start and end >= start + self.config.window_s:
            return {}
        return {"partial": True, "covered_start": iso(covered)}

    def _close_window(self, start: float, end: float) -> list[Record]:
        window = {"start": iso(start), "end": iso(end)}
        self._add_window_to(self.day)
        lines = self._line_counts
        self._line_counts = {line: {IN: 0, OUT: 0} for line in lines}
        zones = {zone_id: self._close_zone(stats) for zone_id, stats in self._zones.items()}
        counts: Record = {
            "type": "counts",
            "window": window,
            **self._coverage(start, end),
            "frames": self._frames,
            "lines": lines,
            "people": self.people.report(),
            "store_occupancy": self.store_occupancy,
            "today": self.day.today(),
            "zones": zones,
        }
        self._frames = 0
        self.people.restart()
        records: list[Record] = [counts]
        if self._ended_sessions or self._short_sessions:
            records.append(
                {
                    "type": "sessions",
                    "window": window,
                    "sessions": self._ended_sessions,
                    "short_sessions": self._short_sessions,
                    "min_session_s": self.config.min_session_s,
                    "plane": "metres" if self.config.homography is not None else "image_heights",
                }
            )
            self._ended_sessions = []
            self._short_sessions = 0
        return records

    def _close_heatmap(self, start: float, end: float) -> Record:
        grid = self.heatmap.close()
        seconds = grid.pop("seconds")
        assert isinstance(seconds, np.ndarray)
        return {
            "type": "heatmap",
            "window": {"start": iso(start), "end": iso(end)},
            **grid,
            "unit": "track_seconds",
            "cells": np.round(seconds, 1).tolist(),
        }

    def flush(self, timestamp: float) -> list[Record]:
        """Close the current (partial) windows now: on shutdown nothing collected is lost."""
        if self._window_start is None:
            return []
        wall = self.wall(timestamp)
        end = max(wall, self._window_start)
        records = self._close_window(self._window_start, end)
        assert self._heatmap_start is not None
        records.append(self._close_heatmap(self._heatmap_start, end))
        self._window_start = end
        self._heatmap_start = end
        return records

    def partial(self, timestamp: float) -> list[Record]:
        """The open window's counts and sessions as they stand (a copy: nothing is closed), for
        the crash checkpoint; marked ``partial``."""
        snapshot = copy.deepcopy(self)
        records = [r for r in snapshot.flush(timestamp) if r["type"] in ("counts", "sessions")]
        for record in records:
            record["partial"] = True
        return records

    def live_objects(self) -> int:
        """Records held until their window closes (for the soak test: must stay bounded)."""
        return len(self._ended_sessions)

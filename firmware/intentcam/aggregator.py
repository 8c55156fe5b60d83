"""The aggregator: analytics events in, one record per closed time window out.

Fed with events (line crossings, zone entries and visits, occupancy samples, ended sessions with
their sentiment vectors) it keeps the window's counts and time-weighted levels and, whenever
time passes a window boundary, emits the closed window's records: ``counts`` (every
``window_s``), ``sessions`` (sessions that ended in the window, batched) and ``heatmap`` (every
``heatmap_window_s``). Windows are aligned to the wall clock (a 60 s window runs from :00 to :00)
so that a gateway can line up cameras; a window without frames (a camera outage) is still
emitted, with ``frames: 0``, so gaps are visible rather than silent. Aggregates describing fewer
than ``k_min`` people are suppressed. The store occupancy from door lines lives here too, with
its daily local reset.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from intentcam.analytics.heatmap import Heatmap
from intentcam.analytics.lines import IN, OUT, Crossing
from intentcam.analytics.scene import EndedSession, FrameEvents
from intentcam.analytics.zones import Visit
from intentcam.config import AnalyticsConfig, LineConfig, ZoneConfig
from intentcam.records import Record, iso
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


class DailyReset:
    """The next local reset time (e.g. 04:00) as a wall-clock timestamp."""

    def __init__(self, at: str, tz_name: str | None) -> None:
        hour, minute = (int(part) for part in at.split(":"))
        self._hour, self._minute = hour, minute
        self._tz = ZoneInfo(tz_name) if tz_name else None

    def next_after(self, wall: float) -> float:
        local = (
            datetime.fromtimestamp(wall, self._tz)
            if self._tz
            else datetime.fromtimestamp(wall).astimezone()
        )
        candidate = local.replace(hour=self._hour, minute=self._minute, second=0, microsecond=0)
        if candidate.timestamp() <= wall:
            candidate = (candidate + timedelta(days=1)).replace(
                hour=self._hour, minute=self._minute
            )
        return candidate.timestamp()


class Aggregator:
    """Time windows over one view's analytics events; see the module docstring.

    ``heatmap`` accumulates track-seconds and is closed every ``heatmap_window_s``;
    ``wall_origin`` fixes the wall-clock time of the first frame (a clip replayed faster than
    real time still gets windows of clip time); ``k_min`` is the smallest number of people an
    aggregate may describe.
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
    ) -> None:
        self.config = config
        self.k_min = k_min
        self.heatmap = heatmap
        self._wall_origin = wall_origin
        self._wall_offset: float | None = None
        self._reset = DailyReset(config.occupancy_reset, config.timezone)
        self._next_reset = 0.0
        self.store_occupancy = 0
        self._ended_sessions: list[Record] = []
        self._short_sessions = 0
        self._window_start: float | None = None
        self._heatmap_start: float | None = None
        self._frames = 0
        self.people = Level()
        self.replace_geometry(lines, zones)

    def replace_geometry(self, lines: list[LineConfig], zones: list[ZoneConfig]) -> None:
        """New lines and zones (``set_zones``): their counts for the current window start again
        from zero; sessions, heatmap and windows continue."""
        self._door_lines = {line.id for line in lines if line.door}
        self._line_counts = {line.id: {IN: 0, OUT: 0} for line in lines}
        self._zones = {zone.id: _ZoneWindow(zone.kind) for zone in zones}

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
            if self._next_reset:
                self.store_occupancy = 0
            self._next_reset = self._reset.next_after(wall)
        return records

    # --- events -------------------------------------------------------------------------

    def frame(self, events: FrameEvents) -> None:
        """One frame's events and occupancy samples."""
        self._frames += 1
        self.people.add(len(events.tokens), events.dt)
        for crossing in events.crossings:
            self.crossing(crossing)
        for zone_id in events.entries:
            self._zones[zone_id].entries += 1
        for visit in events.visits:
            self.visit(visit)
        for zone_id, occupancy in events.zone_occupancy.items():
            self._zones[zone_id].occupancy.add(occupancy, events.dt)
        self.heatmap.add(events.tokens, events.feet.image, events.dt, events.feet.plane)

    def crossing(self, crossing: Crossing) -> None:
        if crossing.line in self._line_counts:
            self._line_counts[crossing.line][crossing.direction] += 1
        if crossing.line in self._door_lines:
            self.store_occupancy = max(
                0, self.store_occupancy + (1 if crossing.direction == IN else -1)
            )

    def visit(self, visit: Visit) -> None:
        if visit.zone in self._zones:
            self._zones[visit.zone].dwell.append(visit.dwell)

    def session(self, ended: EndedSession, sentiment: dict[str, Any] | None) -> None:
        """A session that ended, with its sentiment vector (``None`` for a short one)."""
        for crossing in ended.crossings:
            self.crossing(crossing)
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
        """Zero the window's line counts and the store occupancy (``reset_counters``)."""
        self._line_counts = {line: {IN: 0, OUT: 0} for line in self._line_counts}
        self.store_occupancy = 0

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
        stats.entries = 0
        stats.dwell = []
        stats.sentiments = []
        stats.occupancy.restart()
        return report

    def _close_window(self, start: float, end: float) -> list[Record]:
        window = {"start": iso(start), "end": iso(end)}
        lines = self._line_counts
        self._line_counts = {line: {IN: 0, OUT: 0} for line in lines}
        zones = {zone_id: self._close_zone(stats) for zone_id, stats in self._zones.items()}
        counts = {
            "type": "counts",
            "window": window,
            "frames": self._frames,
            "lines": lines,
            "people": self.people.report(),
            "store_occupancy": self.store_occupancy,
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

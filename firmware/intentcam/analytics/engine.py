"""The per-frame analytics and the per-window aggregator.

Fed with each frame's tracked tokens and boxes, it updates the line counters, zones, heatmap and
session signals, and whenever a frame crosses a window boundary it emits the closed window's
records: ``counts`` (every ``window_s``), ``sessions`` (sessions that ended in the window, batched)
and ``heatmap`` (every ``heatmap_window_s``). Windows are aligned to the wall clock (a 60 s window
runs from :00 to :00) so that a gateway can line up cameras; a window without frames (a camera
outage) is still emitted, with ``frames: 0``, so gaps are visible rather than silent.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from intentcam.analytics.geometry import Polygon, ViewSpace, foot_points, homography_from
from intentcam.analytics.heatmap import Heatmap
from intentcam.analytics.intent import IntentSettings, SessionSignals
from intentcam.analytics.lines import IN, OUT, LineCounter
from intentcam.analytics.zones import Visit, ZoneTracker
from intentcam.config import AnalyticsConfig, LineConfig, ZoneConfig
from intentcam.sentiment.vector import ExpressionAccumulator, mean_vector, sentiment_vector
from intentcam.track.sessions import SessionEnd

Record = dict[str, Any]
#: At most this many empty windows are emitted after a long gap (the rest are summarised).
MAX_EMPTY_WINDOWS = 1440


def iso(wall: float) -> str:
    """UTC ISO 8601 with milliseconds, e.g. ``2026-11-21T12:00:00.000Z``."""
    return datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else 0.0


@dataclass
class _Level:
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
    entries: int = 0
    occupancy: _Level = field(default_factory=_Level)
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
        local = datetime.fromtimestamp(wall, self._tz) if self._tz else datetime.fromtimestamp(wall).astimezone()
        candidate = local.replace(hour=self._hour, minute=self._minute, second=0, microsecond=0)
        if candidate.timestamp() <= wall:
            candidate = (candidate + timedelta(days=1)).replace(hour=self._hour, minute=self._minute)
        return candidate.timestamp()


class Analytics:
    """Lines, zones, heatmap and sessions for one camera view; see the module docstring."""

    def __init__(self, config: AnalyticsConfig, lines: list[LineConfig], zones: list[ZoneConfig],
                 *, aspect: float, k_min: int = 3, wall_origin: float | None = None,
                 exclude_zones: list[str] | None = None) -> None:
        self.config = config
        self.k_min = k_min
        homography = None
        floor_size = None
        if config.homography is not None:
            homography = homography_from([list(p) for p in config.homography.image],
                                         [list(p) for p in config.homography.floor])
            floor_size = config.homography.floor_size
        self.space = ViewSpace(aspect, homography)
        metric = homography is not None
        self.intent = IntentSettings(
            min_step=config.min_step or (0.25 if metric else 0.03),
            still_speed=config.still_speed or (0.3 if metric else 0.05),
            radius=config.approach_radius or (2.0 if metric else 0.3),
        )
        self.aspect = aspect
        self._exclude_zones = set(exclude_zones or [])
        self._last_tokens: list[str] = []
        self._last_feet = np.zeros((0, 2))
        self.replace_geometry(lines, zones)
        self.heatmap = Heatmap(tuple(config.heatmap_grid), self.space, k_min, floor_size)
        self._wall_origin = wall_origin
        self._wall_offset: float | None = None
        self._reset = DailyReset(config.occupancy_reset, config.timezone)
        self._next_reset = 0.0
        self.store_occupancy = 0
        self._sessions: dict[str, SessionSignals] = {}
        self._ended_sessions: list[Record] = []
        self._short_sessions = 0
        self._window_start: float | None = None
        self._heatmap_start: float | None = None
        self._frames = 0
        self._last_ts: float | None = None
        self._people = _Level()

    def replace_geometry(self, lines: list[LineConfig], zones: list[ZoneConfig]) -> None:
        """Install new lines and zones live (``set_zones``). Counts of the current window for
        lines and zones that are replaced start again from zero; sessions, heatmap and windows
        continue."""
        config = self.config
        self.lines = [LineCounter(line.id, [list(p) for p in line.points], self.aspect,
                                  config.line_hysteresis) for line in lines]
        self.door_lines = {line.id for line in lines if line.door}
        self.zones = [ZoneTracker(zone.id, zone.kind, [list(p) for p in zone.points],
                                  config.zone_enter_s, config.zone_leave_s) for zone in zones]
        self._display = [zone for zone in self.zones if zone.kind == "display"]
        self._display_planes = [Polygon(self.space.to_plane(zone.polygon)) for zone in self._display]
        self._display_ids = [zone.id for zone in self._display]
        self._line_base = {line.id: dict(line.totals) for line in self.lines}
        self._zone_windows = {zone.id: _ZoneWindow() for zone in self.zones}
        #: Recent completed visit dwells per zone, for the sentiment vector's dwell_rel.
        self._zone_dwells: dict[str, deque[float]] = {zone.id: deque(maxlen=200)
                                                      for zone in self.zones}
        self._session_dwells: deque[float] = deque(maxlen=200)

    def no_face_tokens(self) -> set[str]:
        """Tokens in staff or excluded zones in the last frame: their faces are never analysed.

        Raw positions, not the debounced membership: a second of debounce must not let a
        face inside a staff zone be analysed. Computed on demand: only the face analyser asks.
        """
        tokens: set[str] = set()
        for zone in self.zones:
            if zone.kind == "staff" or zone.id in self._exclude_zones:
                inside = zone.contains(self._last_feet)
                tokens |= {token for token, hit in zip(self._last_tokens, inside) if hit}
                tokens |= zone.inside_tokens()
        return tokens

    def add_expression(self, token: str, probabilities: np.ndarray, weight: float) -> None:
        """One quality-gated expression sample of a tracked session."""
        session = self._sessions.get(token)
        if session is None:
            return
        if session.expression is None:
            session.expression = ExpressionAccumulator()
        session.expression.add(probabilities, weight)

    def _median_dwell(self, zones: dict[str, Any]) -> float | None:
        if zones:
            main = max(zones, key=lambda zone: zones[zone]["dwell_s"])
            history = self._zone_dwells.get(main)
            if history:
                return float(np.median(history))
        return float(np.median(self._session_dwells)) if self._session_dwells else None

    def occupancy(self) -> dict[str, Any]:
        """People in view, store occupancy and zone occupancy now (the birth message)."""
        return {"people": self._people.now, "store": self.store_occupancy,
                "zones": {zone.id: zone.occupancy for zone in self.zones}}

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

    def _window_of(self, wall: float, length: float) -> float:
        return math.floor(wall / length) * length

    # --- per frame ----------------------------------------------------------------------

    def observe(self, timestamp: float, tokens: list[str], boxes: np.ndarray) -> list[Record]:
        """One frame's tracked people; returns the records of windows this frame closed."""
        wall = self.wall(timestamp)
        records = self._roll(wall)
        dt = 0.0 if self._last_ts is None else max(timestamp - self._last_ts, 0.0)
        dt = min(dt, 1.0)  # an outage does not count as presence
        self._last_ts = timestamp
        self._frames += 1
        if wall >= self._next_reset:
            if self._next_reset:
                self.store_occupancy = 0
            self._next_reset = self._reset.next_after(wall)

        feet = foot_points(boxes) if len(tokens) else np.zeros((0, 2))
        plane = self.space.to_plane(feet)
        self._last_tokens, self._last_feet = tokens, feet
        self._people.add(len(tokens), dt)
        for line in self.lines:
            for crossing in line.observe(tokens, feet, timestamp):
                self._on_crossing(crossing.line, crossing.token, crossing.direction)
        in_display: set[str] = set()
        for zone in self.zones:
            events = zone.observe(tokens, feet, timestamp)
            window = self._zone_windows[zone.id]
            window.entries += len(events.entered)
            for token, _ in events.entered:
                if zone.kind == "display" and token in self._sessions:
                    self._sessions[token].entered_displays.add(zone.id)
            for visit in events.visits:
                self._on_visit(visit)
            window.occupancy.add(zone.occupancy, dt)
            if zone.kind == "display":
                in_display |= zone.inside_tokens()
        self.heatmap.add(tokens, feet, dt)
        # (N, D) distances of every foot point to every display zone, in one go per zone.
        distances = (np.column_stack([zone.distance(plane) for zone in self._display_planes])
                     if self._display_planes else np.zeros((len(tokens), 0)))
        for index, token in enumerate(tokens):
            session = self._sessions.get(token)
            if session is None:
                session = self._sessions[token] = SessionSignals(token, timestamp, self.intent)
            session.observe(plane[index], timestamp, token in in_display, distances[index],
                            self._display_ids)
        return records

    def _on_crossing(self, line_id: str, token: str, direction: str) -> None:
        if line_id in self.door_lines:
            self.store_occupancy = max(0, self.store_occupancy + (1 if direction == IN else -1))
        session = self._sessions.get(token)
        if session is not None:
            session.crossings.append((line_id, direction))

    def _on_visit(self, visit: Visit) -> None:
        if visit.zone in self._zone_windows:
            self._zone_windows[visit.zone].dwell.append(visit.dwell)
            self._zone_dwells[visit.zone].append(visit.dwell)
        session = self._sessions.get(visit.token)
        if session is not None:
            session.add_visit(visit.zone, visit.dwell)

    def end_sessions(self, ends: list[SessionEnd]) -> None:
        """Sessions whose track ended (or whose token rotated): finish and queue their summary."""
        for end in ends:
            # Complete the token's crossings and visits first: they belong to its summary.
            session = self._sessions.get(end.token)
            last = session.last_time if session is not None else end.ended
            for line in self.lines:
                crossing = line.end(end.token, last)
                if crossing is not None:
                    self._on_crossing(crossing.line, crossing.token, crossing.direction)
            for zone in self.zones:
                visit = zone.end(end.token)
                if visit is not None:
                    self._on_visit(visit)
            self._sessions.pop(end.token, None)
            if session is None:
                continue
            if last - session.started < self.config.min_session_s:
                self._short_sessions += 1
                continue
            signals = session.summary()
            vector = sentiment_vector(signals, self._median_dwell(signals["zones"]),
                                      session.expression)
            self._session_dwells.append(signals["dwell_s"])
            for zone in signals["zones"]:
                if zone in self._zone_windows:
                    self._zone_windows[zone].sentiments.append(vector)
            self._ended_sessions.append({
                "token": end.token,
                "start": iso(self.wall(session.started)),
                "end": iso(self.wall(last)),
                "reason": end.reason,
                **signals,
                "sentiment": vector,
            })

    def reset_counters(self) -> None:
        """Zero line totals and the store occupancy (the ``reset_counters`` command)."""
        for line in self.lines:
            line.reset()
            self._line_base[line.id] = dict(line.totals)
        self.store_occupancy = 0

    # --- windows ------------------------------------------------------------------------

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
            records.append(self._close_heatmap(self._heatmap_start, self._heatmap_start + heat_length))
            self._heatmap_start = self._window_of(wall, heat_length)
        return records

    def _close_window(self, start: float, end: float) -> list[Record]:
        window = {"start": iso(start), "end": iso(end)}
        lines = {}
        for line in self.lines:
            base = self._line_base[line.id]
            lines[line.id] = {IN: line.totals[IN] - base[IN], OUT: line.totals[OUT] - base[OUT]}
            self._line_base[line.id] = dict(line.totals)
        zones = {}
        for zone in self.zones:
            stats = self._zone_windows[zone.id]
            dwell: dict[str, Any] = {"count": len(stats.dwell)}
            if len(stats.dwell) >= self.k_min:
                dwell.update(p50=round(percentile(stats.dwell, 50), 2),
                             p90=round(percentile(stats.dwell, 90), 2),
                             max=round(max(stats.dwell), 2))
            else:
                dwell["suppressed"] = len(stats.dwell) > 0
            zones[zone.id] = {"kind": zone.kind, "entries": stats.entries,
                              "occupancy": stats.occupancy.report(), "dwell": dwell}
            if len(stats.sentiments) >= self.k_min:  # a mean over fewer sessions is not published
                zones[zone.id]["sentiment"] = mean_vector(stats.sentiments)
            stats.entries = 0
            stats.dwell = []
            stats.sentiments = []
            stats.occupancy.restart()
        counts = {"type": "counts", "window": window, "frames": self._frames, "lines": lines,
                  "people": self._people.report(), "store_occupancy": self.store_occupancy,
                  "zones": zones}
        self._frames = 0
        self._people.restart()
        records: list[Record] = [counts]
        if self._ended_sessions or self._short_sessions:
            records.append({"type": "sessions", "window": window, "sessions": self._ended_sessions,
                            "short_sessions": self._short_sessions,
                            "min_session_s": self.config.min_session_s})
            self._ended_sessions = []
            self._short_sessions = 0
        return records

    def _close_heatmap(self, start: float, end: float) -> Record:
        grid = self.heatmap.close()
        seconds = grid.pop("seconds")
        return {"type": "heatmap", "window": {"start": iso(start), "end": iso(end)}, **grid,
                "unit": "track_seconds", "cells": np.round(seconds, 1).tolist()}

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

    def live_objects(self) -> int:
        """Per-token state held in memory (for the soak test: must stay bounded)."""
        return (len(self._sessions) + sum(len(line) for line in self.lines)
                + sum(len(zone) for zone in self.zones) + len(self._ended_sessions))

"""The per-frame analytics of one camera view: lines, zones and session signals, as events.

Fed with each frame's tracked tokens and boxes, it works out where everyone stands (foot points,
computed once per frame in image, view and plane coordinates), feeds the line counters, zones and
intent signals, and reports what happened as :class:`FrameEvents`: crossings, zone entries,
completed visits, occupancy and the time step. Ended sessions are reported as
:class:`EndedSession` (their last crossings and visits, and their intent summary). Turning events
into time windows is the aggregator's job (:mod:`intentcam.aggregator`), not this module's.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from intentcam.analytics.geometry import (
    Polygon,
    ViewSpace,
    foot_points,
    homography_from,
    in_view_units,
)
from intentcam.analytics.heatmap import MAX_STEP_S
from intentcam.analytics.intent import IntentSettings, SessionSignals
from intentcam.analytics.lines import IN, Crossing, LineCounter
from intentcam.analytics.shelf import ShelfSettings, ShelfStay, ShelfWatch, ZoneInteraction
from intentcam.analytics.zones import Visit, ZoneTracker
from intentcam.config import AnalyticsConfig, LineConfig, ShelfConfig, ZoneConfig
from intentcam.records import SessionEnd


@dataclass(frozen=True)
class FootPoints:
    """Where the tracked people stand, in the three coordinate systems the analytics use.

    ``image``: normalised 0..1; ``view``: x multiplied by the aspect ratio (frame heights);
    ``plane``: view units, or floor metres with a homography. All (N, 2).
    """

    image: np.ndarray
    view: np.ndarray
    plane: np.ndarray

    @classmethod
    def of(cls, boxes: np.ndarray, space: ViewSpace) -> FootPoints:
        image = foot_points(boxes) if len(boxes) else np.zeros((0, 2))
        view = in_view_units(image, space.aspect)
        plane = view if space.homography is None else space.to_plane(image)
        return cls(image, view, plane)


@dataclass
class FrameEvents:
    """What one frame changed; the aggregator turns these into windows."""

    timestamp: float
    #: Seconds since the previous frame, capped at :data:`MAX_STEP_S`.
    dt: float
    tokens: list[str]
    feet: FootPoints
    crossings: list[Crossing] = field(default_factory=list)
    #: Zone id of every debounced entry in this frame.
    entries: list[str] = field(default_factory=list)
    visits: list[Visit] = field(default_factory=list)
    #: Tokens confirmed inside each zone now.
    zone_occupancy: dict[str, int] = field(default_factory=dict)
    #: Shelf interactions closed because the person left the shelf.
    interactions: list[ZoneInteraction] = field(default_factory=list)


@dataclass
class EndedSession:
    """A session that ended: its last crossings and visits, then its summary.

    ``summary`` is ``None`` when analytics never saw the token; ``short`` sessions (below
    ``min_session_s``) are counted but not published one by one.
    """

    end: SessionEnd
    crossings: list[Crossing]
    visits: list[Visit]
    interactions: list[ZoneInteraction] = field(default_factory=list)
    started: float = 0.0
    last: float = 0.0
    summary: dict[str, Any] | None = None
    short: bool = False


class Analytics:
    """Lines, zones and session signals for one camera view; see the module docstring.

    ``config`` gives debounce times, hysteresis, intent units and ``min_session_s``; ``aspect``
    is the frame's width / height, so distances are in frame heights in both directions;
    faces of tokens in ``exclude_zones`` (and ``staff`` zones) are never analysed; ``shelf``
    says when a person is at a ``shelf`` zone and how their hands are judged there (the poses
    come from outside, :meth:`add_pose`).
    """

    def __init__(
        self,
        config: AnalyticsConfig,
        lines: list[LineConfig],
        zones: list[ZoneConfig],
        *,
        aspect: float,
        exclude_zones: list[str] | None = None,
        shelf: ShelfConfig | None = None,
    ) -> None:
        self.config = config
        self._shelf_config = shelf or ShelfConfig()
        #: Interactions per (zone, token) since the token's last completed visit of the zone.
        self._visit_interactions: Counter[tuple[str, str]] = Counter()
        homography = None
        if config.homography is not None:
            homography = homography_from(
                [list(p) for p in config.homography.image],
                [list(p) for p in config.homography.floor],
            )
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
        self._last_ts: float | None = None
        self._sessions: dict[str, SessionSignals] = {}
        self.replace_geometry(lines, zones)

    def replace_geometry(self, lines: list[LineConfig], zones: list[ZoneConfig]) -> None:
        """Install new lines and zones live (``set_zones``); sessions continue."""
        config = self.config
        self.lines = [
            LineCounter(line.id, line.oriented_points(), self.aspect, config.line_hysteresis)
            for line in lines
        ]
        self.zones = [
            ZoneTracker(
                zone.id,
                zone.kind,
                [list(p) for p in zone.points],
                config.zone_enter_s,
                config.zone_leave_s,
            )
            for zone in zones
        ]
        #: Each zone's kind, by id (what the alert rules look zones up by).
        self.zone_kinds: dict[str, str] = {zone.id: zone.kind for zone in zones}
        self._display = [zone for zone in self.zones if zone.kind == "display"]
        self._display_planes = [
            Polygon(self.space.to_plane(zone.polygon)) for zone in self._display
        ]
        self._display_ids = [zone.id for zone in self._display]
        self.shelves = ShelfWatch(
            {zone.id: [list(p) for p in zone.points] for zone in zones if zone.kind == "shelf"},
            ShelfSettings.from_config(self._shelf_config),
            self._shelf_config.near,
            config.zone_leave_s,
            self.aspect,
        )
        self._shelf_column = {zone_id: j for j, zone_id in enumerate(self.shelves.zones)}
        # Stays at the shelves start afresh; the counts of shelves that are gone are dropped.
        self._visit_interactions = Counter(
            {key: n for key, n in self._visit_interactions.items() if key[0] in self._shelf_column}
        )
        self.at_shelf: dict[int, bool] = {}
        #: Those of them walking past, whose poses wait for everyone else's.
        self.passing: frozenset[int] = frozenset()

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

    def zone_occupancy(self) -> dict[str, int]:
        """Tokens confirmed inside each zone now."""
        return {zone.id: zone.occupancy for zone in self.zones}

    def reset_counters(self) -> None:
        """Zero the line totals (the ``reset_counters`` command); per-token state is kept."""
        for line in self.lines:
            line.reset()

    def observe(
        self,
        timestamp: float,
        tokens: list[str],
        boxes: np.ndarray,
        feet: FootPoints | None = None,
    ) -> FrameEvents:
        """One frame's tracked people (normalised ``x1, y1, x2, y2`` boxes): what changed.

        ``feet`` are the boxes' foot points when the caller has already computed them.
        """
        dt = 0.0 if self._last_ts is None else max(timestamp - self._last_ts, 0.0)
        self._last_ts = timestamp
        if not len(tokens):
            boxes = np.zeros((0, 4))
        if feet is None:
            feet = FootPoints.of(boxes, self.space)
        self._last_tokens, self._last_feet = tokens, feet.image
        events = FrameEvents(timestamp, min(dt, MAX_STEP_S), tokens, feet)
        at_shelf = self.shelves.at_shelf(boxes)
        #: This frame's people at a shelf (whose poses are wanted), by index, each with whether
        #: their crop reaches up (a shelf rising above their head).
        self.at_shelf = self.shelves.poses_wanted(boxes, at_shelf)
        events.interactions = self._record(self.shelves.present(tokens, boxes, at_shelf, timestamp))
        self.passing = self.shelves.passing(tokens, self.at_shelf)
        for line in self.lines:
            for crossing in line.observe(tokens, feet.image, timestamp, view_points=feet.view):
                self._on_crossing(crossing)
                events.crossings.append(crossing)
        in_display: set[str] = set()
        for zone in self.zones:
            column = self._shelf_column.get(zone.id) if zone.kind == "shelf" else None
            raw = at_shelf[:, column] if column is not None else None
            zone_events = zone.observe(tokens, feet.image, timestamp, raw)
            zone_events.visits = [self._with_interactions(v) for v in zone_events.visits]
            events.entries.extend(zone.id for _ in zone_events.entered)
            for token, _ in zone_events.entered:
                if zone.kind == "display" and token in self._sessions:
                    self._sessions[token].entered_displays.add(zone.id)
            for visit in zone_events.visits:
                self._on_visit(visit)
            events.visits.extend(zone_events.visits)
            events.zone_occupancy[zone.id] = zone.occupancy
            if zone.kind == "display":
                in_display |= zone.inside_tokens()
        # (N, D) distances of every foot point to every display zone, in one go per zone.
        distances = (
            np.column_stack([zone.distance(feet.plane) for zone in self._display_planes])
            if self._display_planes
            else np.zeros((len(tokens), 0))
        )
        for index, token in enumerate(tokens):
            session = self._sessions.get(token)
            if session is None:
                session = self._sessions[token] = SessionSignals(token, timestamp, self.intent)
            session.observe(
                feet.plane[index],
                timestamp,
                token in in_display,
                distances[index],
                self._display_ids,
            )
        return events

    def add_pose(self, token: str, timestamp: float, pose: np.ndarray) -> list[ZoneInteraction]:
        """A pose (17 keypoints) of someone at a shelf; returns the interactions it ended."""
        return self._record(self.shelves.observe(token, timestamp, pose))

    def shelf_stays(self) -> list[ShelfStay]:
        """Everyone at a shelf now, since when, and their reaches there (for alert rules)."""
        return self.shelves.stays()

    def _record(self, interactions: list[ZoneInteraction]) -> list[ZoneInteraction]:
        for item in interactions:
            session = self._sessions.get(item.token)
            if session is not None:
                session.add_interaction(item.zone, item.event.kind)
            self._visit_interactions[(item.zone, item.token)] += 1
        return interactions

    def _with_interactions(self, visit: Visit) -> Visit:
        count = self._visit_interactions.pop((visit.zone, visit.token), 0)
        return replace(visit, interactions=count) if count else visit

    def _on_crossing(self, crossing: Crossing) -> None:
        session = self._sessions.get(crossing.token)
        if session is not None:
            session.crossings.append((crossing.line, crossing.direction))

    def _on_visit(self, visit: Visit) -> None:
        session = self._sessions.get(visit.token)
        if session is not None:
            session.add_visit(visit.zone, visit.dwell)

    def end_sessions(self, ends: list[SessionEnd]) -> list[EndedSession]:
        """Sessions whose track ended (or whose token rotated): complete and summarise them."""
        ended = []
        for end in ends:
            # Complete the token's crossings and visits first: they belong to its summary.
            session = self._sessions.get(end.token)
            last = session.last_time if session is not None else end.ended
            crossings = [c for line in self.lines if (c := line.end(end.token, last)) is not None]
            interactions = self._record(self.shelves.end(end.token, last))
            visits = [self._with_interactions(v)
                      for zone in self.zones if (v := zone.end(end.token)) is not None]  # fmt: skip
            for zone_id in self.shelves.zones:  # a stay too short to be a visit: forget it
                self._visit_interactions.pop((zone_id, end.token), None)
            for crossing in crossings:
                self._on_crossing(crossing)
            for visit in visits:
                self._on_visit(visit)
            self._sessions.pop(end.token, None)
            item = EndedSession(end, crossings, visits, interactions, last=last)
            if session is not None:
                item.started = session.started
                item.short = last - session.started < self.config.min_session_s
                item.summary = None if item.short else session.summary()
            ended.append(item)
        return ended

    def live_objects(self) -> int:
        """Per-token state held in memory (for the soak test: must stay bounded)."""
        return (
            len(self._sessions)
            + len(self.shelves)
            + len(self._visit_interactions)
            + sum(len(line) for line in self.lines)
            + sum(len(zone) for zone in self.zones)
        )


__all__ = ["IN", "Analytics", "EndedSession", "FootPoints", "FrameEvents"]

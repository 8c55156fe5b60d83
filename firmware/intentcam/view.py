"""One camera view: detections -> tracks -> session tokens -> analytics -> windowed records.

:class:`CameraView` is what the frame loop talks to, through a narrow API (process a frame, coast
through a skipped one, finish, people now, tracks present or moving, stage timings, live
geometry, counters, occupancy). Inside, it wires the stages in their order:

- :mod:`intentcam.track`: the tracker and the anonymous session tokens;
- :mod:`intentcam.analytics`: lines, zones and intent signals, reported as events;
- :mod:`intentcam.pose`: poses of the people at ``shelf`` zones (when there are any), within a
  budget, for the shelf interactions;
- :mod:`intentcam.sentiment`: expression samples (when lawful and on) and session vectors;
- :mod:`intentcam.aggregator`: the events become ``counts``, ``sessions`` and ``heatmap`` records;
- :mod:`intentcam.analytics.alerts`: the staff-assist rules, checked every frame.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from intentcam.aggregator import Aggregator, DayState
from intentcam.analytics.alerts import AlertRules, SavedCooldowns, Watched
from intentcam.analytics.heatmap import Heatmap
from intentcam.analytics.scene import Analytics, EndedSession, FootPoints, FrameEvents
from intentcam.config import (
    AlertsConfig,
    AnalyticsConfig,
    LineConfig,
    Settings,
    ShelfConfig,
    TrackerConfig,
    ZoneConfig,
)
from intentcam.detect.detections import Detections
from intentcam.errors import UserError
from intentcam.models.manifest import OperatingPoint
from intentcam.pose.sampler import PoseSampler
from intentcam.records import Record, SessionEnd
from intentcam.sentiment.analyzer import FaceAnalyzer
from intentcam.sentiment.sessions import SessionSentiment
from intentcam.track.bytetrack import ByteTracker, TrackerSettings, TrackFrame
from intentcam.track.sessions import RelinkSettings, SessionTokens

log = logging.getLogger(__name__)
T = TypeVar("T")
#: The optional stages a failure switches off (:attr:`CameraView.stages_off`).
SHELF_STAGE, FACES_STAGE = "shelf interactions", "expression sampling"


class ViewAnalytics:
    """Analytics, session sentiment and the aggregator of one view, fed in the right order.

    Events of ended sessions go to the aggregator before time advances, so a session that ends
    in a window is reported in that window; then the frame's own events follow.
    """

    def __init__(
        self,
        config: AnalyticsConfig,
        lines: list[LineConfig],
        zones: list[ZoneConfig],
        *,
        aspect: float,
        k_min: int = 3,
        wall_origin: float | None = None,
        exclude_zones: list[str] | None = None,
        restored: DayState | None = None,
        events: bool = False,
        event_tokens: bool = False,
        shelf: ShelfConfig | None = None,
        alerts: AlertsConfig | None = None,
        cooldowns: SavedCooldowns | None = None,
    ) -> None:
        self.scene = Analytics(
            config, lines, zones, aspect=aspect, exclude_zones=exclude_zones, shelf=shelf
        )
        self.alerts = AlertRules.from_config(alerts or AlertsConfig(), config.timezone, cooldowns)
        floor_size = config.homography.floor_size if config.homography is not None else None
        self.heatmap = Heatmap(config.heatmap_grid, self.scene.space, k_min, floor_size)
        self.sentiment = SessionSentiment([zone.id for zone in zones])
        self.aggregator = Aggregator(
            config,
            lines,
            zones,
            self.heatmap,
            k_min=k_min,
            wall_origin=wall_origin,
            restored=restored,
            events=events,
            event_tokens=event_tokens,
        )

    def foot_points(self, boxes: np.ndarray) -> FootPoints:
        """Where the people of these boxes stand, in every coordinate system the view uses."""
        return FootPoints.of(boxes, self.scene.space)

    def observe(
        self,
        timestamp: float,
        tokens: list[str],
        boxes: np.ndarray,
        feet: FootPoints | None = None,
    ) -> list[Record]:
        """One frame's tracked people; returns the records of windows this frame closed, then
        the ``event`` records of what was counted since the last frame (when events are on).

        ``feet``: :meth:`foot_points` of ``boxes``, when the caller already has them.
        """
        records = self.aggregator.advance(timestamp)
        events = self.scene.observe(timestamp, tokens, boxes, feet)
        for visit in events.visits:
            self.sentiment.visit(visit.zone, visit.dwell)
        self.aggregator.frame(events)
        return records + self.aggregator.take_events() + self._alerts(events)

    def _alerts(self, events: FrameEvents) -> list[Record]:
        if not self.alerts.config.active:
            return []
        return self.alerts.check(
            Watched(
                events.timestamp,
                self.aggregator.wall(events.timestamp),
                self.scene.shelf_stays(),
                events.zone_occupancy,
                self.scene.zone_kinds,
            )
        )

    def add_pose(self, token: str, timestamp: float, pose: np.ndarray) -> list[Record]:
        """A pose of someone at a shelf; returns the ``event`` records of what it ended."""
        self.aggregator.interactions(self.scene.add_pose(token, timestamp, pose))
        return self.aggregator.take_events()

    def interactions_off(self) -> None:
        """No more poses will come (the pose stage failed): windows stop reporting
        interactions, which would read as zeros."""
        self.aggregator.interactions_measured = False

    @property
    def shelf_zones(self) -> list[str]:
        """The ids of the view's shelf zones (live: ``set_zones`` may add or remove them)."""
        return self.scene.shelves.zones

    @property
    def at_shelf(self) -> dict[int, bool]:
        """The last frame's people at a shelf zone, by index, each with whether their pose crop
        reaches up (a shelf rising above their head in the picture)."""
        return self.scene.at_shelf

    @property
    def passing(self) -> frozenset[int]:
        """Those of :attr:`at_shelf` walking past: their poses wait for everyone else's."""
        return self.scene.passing

    def end_sessions(self, ends: list[SessionEnd]) -> None:
        """Sessions whose track ended (or whose token rotated): summarise and queue them."""
        for ended in self.scene.end_sessions(ends):
            for visit in ended.visits:  # the zones' dwell history first: dwell_rel uses it
                self.sentiment.visit(visit.zone, visit.dwell)
            self.aggregator.session(ended, self._vector(ended))

    def _vector(self, ended: EndedSession) -> dict[str, Any] | None:
        """The session's sentiment vector; ``None`` (samples dropped) when it is not published."""
        if ended.summary is None:
            self.sentiment.forget(ended.end.token)
            return None
        return self.sentiment.vector(ended.end.token, ended.summary)

    def add_expression(self, token: str, probabilities: np.ndarray, weight: float) -> None:
        """One quality-gated expression sample of a tracked session."""
        self.sentiment.add_expression(token, probabilities, weight)

    def no_face_tokens(self) -> set[str]:
        return self.scene.no_face_tokens()

    def replace_geometry(self, lines: list[LineConfig], zones: list[ZoneConfig]) -> None:
        """Install new lines and zones live (``set_zones``)."""
        self.scene.replace_geometry(lines, zones)
        self.sentiment.replace_zones([zone.id for zone in zones])
        self.aggregator.replace_geometry(lines, zones)

    def reset_counters(self) -> None:
        """Zero line totals and the store occupancy (the ``reset_counters`` command)."""
        self.scene.reset_counters()
        self.aggregator.reset_counters()

    def occupancy(self) -> dict[str, Any]:
        """People in view, store occupancy and zone occupancy now (the birth message)."""
        return {
            "people": self.aggregator.people.now,
            "store": self.aggregator.store_occupancy,
            "zones": self.scene.zone_occupancy(),
        }

    def live_state(self) -> dict[str, Any]:
        """The body of the retained ``state`` message: occupancy now and today's totals."""
        return {
            "people": self.aggregator.people.now,
            **self.aggregator.live_state(),
            "zones": self.scene.zone_occupancy(),
        }

    def flush(self, timestamp: float) -> list[Record]:
        """Close the partial windows now (shutdown), after the last ``event`` records."""
        return self.aggregator.take_events() + self.aggregator.flush(timestamp)

    def live_objects(self) -> int:
        return self.scene.live_objects() + len(self.sentiment) + self.aggregator.live_objects()


@dataclass
class CameraView:
    """Tracking, tokens, analytics and sentiment of one camera view; see the module docstring."""

    tracker: ByteTracker
    sessions: SessionTokens
    analytics: ViewAnalytics
    #: Expression sampling; ``None`` unless privacy.expression_inference is on.
    faces: FaceAnalyzer | None = None
    #: Builds the pose sampler the first time someone is at a shelf zone, if it is not built.
    pose_factory: Callable[[], PoseSampler] | None = None
    poses: PoseSampler | None = None
    #: Milliseconds per stage of the last frame (``tracking``, ``analytics``, ``sentiment``).
    stage_ms: dict[str, float] = field(default_factory=dict)
    #: Optional stages switched off by a failure while running, with why: the camera counts on
    #: without them for the rest of the run (the daemon's status says ``degraded``).
    stages_off: dict[str, str] = field(default_factory=dict)
    _last: TrackFrame | None = None
    _last_ts: float = 0.0
    _last_tokens: list[str] = field(default_factory=list)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        aspect: float,
        point: OperatingPoint,
        wall_origin: float | None = None,
        restored: DayState | None = None,
        cooldowns: SavedCooldowns | None = None,
    ) -> CameraView:
        """The view for frames of ``aspect`` = width / height, as configured, tracking the
        detections of a detector calibrated at ``point``; ``restored`` is the day state a
        previous run saved, ``cooldowns`` where the alert rules' cooldowns outlive the run."""
        from intentcam.pose.build import build_pose_sampler
        from intentcam.sentiment.build import build_face_analyzer

        def pose_sampler() -> PoseSampler:
            return build_pose_sampler(settings)

        view = cls(
            tracker=ByteTracker(
                TrackerSettings.from_config(settings.tracker, point), aspect=aspect
            ),
            sessions=SessionTokens(
                settings.tracker.max_session_s,
                relink=RelinkSettings.from_config(settings.tracker),
            ),
            analytics=ViewAnalytics(
                settings.analytics,
                settings.lines,
                settings.zones,
                aspect=aspect,
                k_min=settings.privacy.k_min,
                wall_origin=wall_origin,
                exclude_zones=settings.privacy.exclude_zones,
                restored=restored,
                events=settings.telemetry.events,
                event_tokens=settings.telemetry.event_tokens,
                shelf=settings.shelf,
                alerts=settings.alerts,
                cooldowns=cooldowns,
            ),
            pose_factory=pose_sampler,
        )
        # The optional stages' models load now, so a missing or broken one is logged at start;
        # it switches its stage off (status degraded, saying why) and the camera counts on: a
        # shelf or face model must not cost the store its footfall. MoveNet loads now only
        # when shelves are configured, else when a shelf added live first has someone at it.
        view.faces = view._optional(FACES_STAGE, lambda: build_face_analyzer(settings),
                                    view._faces_off)  # fmt: skip
        if settings.shelf_zone_ids:
            view.poses = view._optional(SHELF_STAGE, pose_sampler, view._shelves_off)
        return view

    def recalibrate(self, config: TrackerConfig, point: OperatingPoint) -> None:
        """Follow a swapped detector: its operating point sets the association thresholds.
        Tracks, tokens and windows carry on."""
        self.tracker.settings = TrackerSettings.from_config(config, point)

    @property
    def low_score(self) -> float:
        """The detector must return boxes down to this score for the second association stage."""
        return self.tracker.settings.low_score

    @property
    def people_now(self) -> int:
        """Confirmed tracks seen in the last processed frame."""
        return len(self._last.ids) if self._last is not None else 0

    def models(self) -> list[dict[str, Any]]:
        """The models this view has loaded beside the detector (pose, face, expression), as
        :meth:`intentcam.inference.base.Model.describe` gives them, for health and status."""
        loaded = [self.poses.model.model] if self.poses is not None else []
        if self.faces is not None:
            loaded += [self.faces.detector.model, self.faces.expression.model]
        return [model.describe() for model in loaded]

    @property
    def watches_shelves(self) -> bool:
        """The view has shelf zones: the people that matter stand near the camera, large."""
        return bool(self.analytics.shelf_zones)

    @property
    def people_at_shelves(self) -> bool:
        """Someone was at a shelf zone in the last processed frame."""
        return bool(self.analytics.at_shelf)

    @property
    def tracks_present(self) -> bool:
        return self.tracker.confirmed_count() > 0

    @property
    def tracks_starting(self) -> bool:
        """A tentative track waits for the hits that confirm it."""
        return self.tracker.tentative_count() > 0

    def tracks_moving(self, speed: float) -> bool:
        """Whether a confirmed track moves faster than ``speed`` frame heights per second."""
        return self.tracker.moving(speed)

    def tracks(self) -> tuple[np.ndarray, np.ndarray]:
        """Ids and filtered boxes of the tracks matched in the last processed frame."""
        if self._last is None:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 4), dtype=np.float32)
        return self._last.ids, self._last.boxes

    def process(
        self,
        detections: Detections,
        timestamp: float,
        image: np.ndarray | None = None,
        *,
        detect_ms: float = 0.0,
        spare_ms: float = 0.0,
    ) -> list[Record]:
        """Track one frame's detections; returns the records of any windows that closed.

        ``image`` (the frame) is where poses of the people at shelves are taken, within a budget
        earned from ``detect_ms`` (the detector's time on this frame) and ``spare_ms`` (time the
        loop waited for it), and faces are sampled when expression inference is on.
        """
        started = time.perf_counter()
        tracked = self.tracker.update(detections.boxes, detections.scores, timestamp)
        ended = self.sessions.end(tracked.ended, timestamp)
        feet = self.analytics.foot_points(tracked.boxes)  # once per frame, for tokens and analytics
        tokens, rotated = self.sessions.assign(tracked.ids, timestamp, feet.view)
        tracked_at = time.perf_counter()
        gone = ended + rotated
        self.analytics.end_sessions(gone)
        self._last, self._last_ts, self._last_tokens = tracked, timestamp, tokens
        records = self.analytics.observe(timestamp, tokens, tracked.boxes, feet)
        analysed_at = time.perf_counter()
        self.stage_ms = {
            "tracking": (tracked_at - started) * 1e3,
            "analytics": (analysed_at - tracked_at) * 1e3,
        }
        if self.poses is None and self.pose_factory is not None and self.analytics.at_shelf:
            self.poses = self._optional(SHELF_STAGE, self.pose_factory, self._shelves_off)
        if self.poses is not None and image is not None:
            earned = (detect_ms, spare_ms)
            records += self._optional(
                SHELF_STAGE,
                lambda: self._poses(image, tokens, tracked.boxes, timestamp, earned, gone),
                self._shelves_off,
            ) or []  # fmt: skip
        if self.faces is not None and image is not None:
            faces = self.faces
            self._optional(
                FACES_STAGE,
                lambda: self._faces(faces, image, tokens, tracked.boxes, timestamp, gone),
                self._faces_off,
            )
            self.stage_ms["sentiment"] = (time.perf_counter() - analysed_at) * 1e3
        return records

    def _optional(self, stage: str, work: Callable[[], T], off: Callable[[], None]) -> T | None:
        """``work`` of an optional stage (poses, expressions). If it fails, ``off`` switches the
        stage off for the rest of the run, which :attr:`stages_off` and the log say, and the
        camera goes on counting: a broken pose model must not stop the footfall."""
        try:
            return work()
        except Exception as exc:  # noqa: BLE001 - whatever broke, only this stage stops
            why = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            self.stages_off[stage] = why
            log.error("%s switched off, counting goes on: %s", stage, why)
            log.debug("%s failed", stage, exc_info=True)
            off()
            return None

    def _shelves_off(self) -> None:
        self.poses = self.pose_factory = None
        self.analytics.interactions_off()

    def _faces_off(self) -> None:
        self.faces = None

    def _faces(self, faces: FaceAnalyzer, image: np.ndarray, tokens: list[str], boxes: np.ndarray,
               timestamp: float, ended: list[SessionEnd]) -> None:  # fmt: skip
        faces.forget([end.token for end in ended])
        faces.analyse(image, tokens, boxes, timestamp, self.analytics.no_face_tokens(),
                      self.analytics.add_expression)  # fmt: skip

    def _poses(self, image: np.ndarray, tokens: list[str], boxes: np.ndarray, timestamp: float,
               earned: tuple[float, float], ended: list[SessionEnd]) -> list[Record]:  # fmt: skip
        assert self.poses is not None
        started = time.perf_counter()
        self.poses.forget([end.token for end in ended])
        records: list[Record] = []

        def take(index: int, points: np.ndarray) -> None:
            records.extend(self.analytics.add_pose(tokens[index], timestamp, points))

        self.poses.budget.earn(*earned)
        self.poses.sample(image, tokens, boxes, self.analytics.at_shelf, timestamp, take,
                          self.analytics.passing)  # fmt: skip
        self.stage_ms["pose"] = (time.perf_counter() - started) * 1e3
        return records

    def coast(self, timestamp: float) -> list[Record]:
        """A frame the motion gate skipped: nothing moved, so the analytics advance in time with
        the people where they were last seen (dwell and occupancy keep counting)."""
        self._last_ts = timestamp
        started = time.perf_counter()
        _, boxes = self.tracks()
        records = self.analytics.observe(timestamp, self._last_tokens if len(boxes) else [], boxes)
        self.stage_ms = {"analytics": (time.perf_counter() - started) * 1e3}
        return records

    @property
    def open_window(self) -> float | None:
        """Wall-clock start of the open ``counts`` window (changes as each window closes)."""
        return self.analytics.aggregator.window_start

    def partial(self) -> list[Record]:
        """The open window as it stands (counts and sessions), for the crash checkpoint."""
        if not self._last_ts:
            return []
        return self.analytics.aggregator.partial(self._last_ts)

    def idle(self, now: float, source_state: str) -> list[Record]:
        """No frame came (the camera is away): close the windows that are due, marked with the
        source's state when they saw no frame at all."""
        records = self.analytics.aggregator.advance(now)
        for record in records:
            if record.get("type") == "counts" and record.get("frames") == 0:
                record["source"] = source_state
        return records

    def finish(self) -> list[Record]:
        """End every session and close the partial windows (shutdown: nothing is lost)."""
        self.tracker.end_all(self._last_ts)
        self.analytics.end_sessions(self.sessions.end_all(self._last_ts))
        return self.analytics.flush(self._last_ts)

    def apply_geometry(self, lines: list[LineConfig], zones: list[ZoneConfig]) -> None:
        """New lines and zones, live (``set_zones`` or ``reload``)."""
        self.analytics.replace_geometry(lines, zones)

    def reset_counters(self) -> None:
        self.analytics.reset_counters()

    def occupancy(self) -> dict[str, Any]:
        return self.analytics.occupancy()

    def live_state(self) -> dict[str, Any]:
        return self.analytics.live_state()

    def live_objects(self) -> int:
        poses = len(self.poses) if self.poses is not None else 0
        return len(self.tracker) + len(self.sessions) + self.analytics.live_objects() + poses

"""The tracking stage of the frame loop: detections -> tracks -> session tokens -> analytics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from intentcam.analytics import Analytics
from intentcam.config import Settings
from intentcam.detect.detections import Detections
from intentcam.sentiment.analyzer import FaceAnalyzer
from intentcam.track.bytetrack import ByteTracker, TrackerSettings, TrackFrame
from intentcam.track.sessions import SessionTokens


def tracker_settings(settings: Settings) -> TrackerSettings:
    """Tracker thresholds from the config (``new_track_score`` defaults to high_score + 0.1)."""
    config = settings.tracker
    high = config.high_score
    return TrackerSettings(
        high_score=high,
        low_score=min(config.low_score, high),
        new_track_score=config.new_track_score or min(high + 0.1, 0.99),
        match_iou=config.match_iou,
        low_match_iou=config.low_match_iou,
        min_hits=config.min_hits,
        lost_ttl_s=config.lost_ttl_s,
    )


@dataclass
class TrackingStage:
    """Owns the tracker, the session tokens and the analytics of one camera view."""

    tracker: ByteTracker
    sessions: SessionTokens
    analytics: Analytics
    #: Expression sampling; ``None`` unless privacy.expression_inference is on.
    faces: FaceAnalyzer | None = None
    last: TrackFrame | None = None
    _last_ts: float = field(default=0.0)
    _last_tokens: list[str] = field(default_factory=list)
    #: Milliseconds of the last frame: tracker (with tokens) and analytics.
    tracking_ms: float = 0.0
    analytics_ms: float = 0.0
    sentiment_ms: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings, aspect: float,
                      wall_origin: float | None = None) -> TrackingStage:
        from intentcam.sentiment.build import build_face_analyzer

        return cls(
            tracker=ByteTracker(tracker_settings(settings), aspect=aspect),
            sessions=SessionTokens(settings.tracker.max_session_s),
            analytics=Analytics(settings.analytics, settings.lines, settings.zones, aspect=aspect,
                                k_min=settings.privacy.k_min, wall_origin=wall_origin,
                                exclude_zones=settings.privacy.exclude_zones),
            faces=build_face_analyzer(settings),
        )

    @property
    def low_score(self) -> float:
        """The detector must return boxes down to this score for the second association stage."""
        return self.tracker.settings.low_score

    def process(self, detections: Detections, timestamp: float,
                image: np.ndarray | None = None) -> list[dict[str, Any]]:
        """Track one frame's detections; returns the records of any windows that closed.

        With expression inference on, ``image`` (the frame) is sampled for faces, within budget.
        """
        started = time.perf_counter()
        tracked = self.tracker.update(detections.boxes, detections.scores, timestamp)
        ended = self.sessions.end(tracked.ended, timestamp)
        tokens, rotated = self.sessions.assign(tracked.ids, timestamp)
        tracked_at = time.perf_counter()
        self.analytics.end_sessions(ended + rotated)
        self.last = tracked
        self._last_ts = timestamp
        self._last_tokens = tokens
        records = self.analytics.observe(timestamp, tokens, tracked.boxes)
        analysed_at = time.perf_counter()
        if self.faces is not None and image is not None:
            self.faces.forget([end.token for end in ended + rotated])
            self.faces.analyse(image, tokens, tracked.boxes, timestamp,
                               self.analytics.no_face_tokens(), self.analytics.add_expression)
        self.tracking_ms = (tracked_at - started) * 1e3
        self.analytics_ms = (analysed_at - tracked_at) * 1e3
        self.sentiment_ms = (time.perf_counter() - analysed_at) * 1e3
        return records

    def coast(self, timestamp: float) -> list[dict[str, Any]]:
        """A frame the motion gate skipped: nothing moved, so the analytics advance in time with
        the people where they were last seen (dwell and occupancy keep counting)."""
        self._last_ts = timestamp
        started = time.perf_counter()
        if self.last is None:
            records = self.analytics.observe(timestamp, [], np.zeros((0, 4), dtype=np.float32))
        else:
            records = self.analytics.observe(timestamp, self._last_tokens, self.last.boxes)
        self.tracking_ms = self.sentiment_ms = 0.0
        self.analytics_ms = (time.perf_counter() - started) * 1e3
        return records

    def finish(self) -> list[dict[str, Any]]:
        """End every session and close the partial windows (shutdown: nothing is lost)."""
        self.tracker.end_all(self._last_ts)
        self.analytics.end_sessions(self.sessions.end_all(self._last_ts))
        return self.analytics.flush(self._last_ts)

    def live_objects(self) -> int:
        return len(self.tracker) + len(self.sessions) + self.analytics.live_objects()

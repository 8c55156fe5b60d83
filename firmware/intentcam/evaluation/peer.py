"""The peer tracker we compare against: Roboflow ``trackers`` ByteTrack, one adapter for all.

``intentcam eval`` and ``intentcam bench`` both run it on the same detections as our tracker, with
our thresholds (from :class:`~intentcam.track.bytetrack.TrackerSettings`) and our lost-track
lifetime, so the comparison is of the trackers alone. ``trackers`` is an evaluation extra
(``intentcam[eval]``), never a device dependency: it is imported when a peer is built.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from intentcam.detect.detections import Detections
from intentcam.errors import UserError
from intentcam.track.bytetrack import TrackerSettings

#: ``trackers`` counts its lost-track buffer in frames of a 30 fps stream.
PEER_BUFFER_FPS = 30


def import_peer() -> tuple[Any, Any]:
    """``(supervision, trackers.ByteTrackTracker)``, or a one-line error naming the extra."""
    try:
        import supervision as sv
        from trackers import ByteTrackTracker
    except ImportError as exc:
        raise UserError(
            f"the peer tracker needs the 'trackers' package ({exc}); install "
            "intentcam[eval] or pass --no-peer"
        ) from None
    return sv, ByteTrackTracker


class PeerTracker:
    """ByteTrack from ``trackers`` behind the same call as ours: normalised boxes in and out."""

    def __init__(
        self, settings: TrackerSettings, width: int, height: int, frame_rate: float
    ) -> None:
        self._sv, tracker_class = import_peer()
        self._tracker = tracker_class(
            lost_track_buffer=max(1, round(settings.lost_ttl_s * PEER_BUFFER_FPS)),
            frame_rate=frame_rate,
            track_activation_threshold=settings.new_track_score,
            minimum_consecutive_frames=settings.min_hits,
            minimum_iou_threshold=settings.match_iou,
            high_conf_det_threshold=settings.high_score,
        )
        self._scale = np.array([width, height, width, height], dtype=np.float64)
        #: The last update's confirmed tracks as ``supervision.Detections`` (pixels).
        self.last: Any = None

    def update(self, detections: Detections, timestamp: float) -> tuple[np.ndarray, np.ndarray]:
        """Confirmed track ids and their normalised ``x1, y1, x2, y2`` boxes after this frame."""
        sv = self._sv
        pixels = detections.boxes.astype(np.float64).reshape(-1, 4) * self._scale
        tracked = self._tracker.update(
            sv.Detections(
                xyxy=pixels,
                confidence=detections.scores.astype(np.float64),
                class_id=np.zeros(len(detections), dtype=int),
            ),
            timestamp=timestamp,
        )
        confirmed = tracked[tracked.tracker_id != -1]
        self.last = confirmed
        return confirmed.tracker_id.astype(np.int64), confirmed.xyxy / self._scale

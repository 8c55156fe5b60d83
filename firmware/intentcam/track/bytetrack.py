"""A ByteTrack-style tracker written for this daemon: motion and geometry only.

Per frame (Zhang et al., ByteTrack, ECCV 2022, without appearance features):
1. predict every track to the frame's timestamp (seconds, not frames);
2. match high-score detections to confirmed and lost tracks by IoU (optimal assignment);
3. match low-score detections to the tracks still unmatched that were seen last frame, so a
   person whose score dips under occlusion keeps their track;
4. match the remaining high-score detections to tentative tracks; tentative tracks that miss
   are dropped, the others are confirmed after ``min_hits`` hits;
5. start tentative tracks from what is left with a score of at least ``new_track_score``;
6. end tracks lost for longer than ``lost_ttl_s``.

All track state lives in numpy arrays; ended tracks are removed from them, so memory is bounded by
the number of people in view, however long the daemon runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lap
import numpy as np

from intentcam.config import TrackerConfig
from intentcam.models.manifest import OperatingPoint
from intentcam.track import kalman

TENTATIVE, CONFIRMED = 0, 1


@dataclass(frozen=True)
class TrackerSettings:
    """Association thresholds and lifetimes; each is explained in ``[tracker]`` of the config,
    which is also the one place their defaults are defined."""

    high_score: float
    low_score: float
    new_track_score: float
    match_iou: float
    low_match_iou: float
    tentative_match_iou: float
    min_hits: int
    lost_ttl_s: float

    @classmethod
    def from_config(cls, config: TrackerConfig, point: OperatingPoint) -> TrackerSettings:
        """The settings of ``[tracker]``; its unset score thresholds come from the detector's
        calibrated operating ``point``.

        ``low_score`` is capped at ``high_score``; ``new_track_score`` defaults to
        ``high_score + 0.1`` (ByteTrack's rule).
        """
        high = config.high_score if config.high_score is not None else point.high_score
        low = config.low_score if config.low_score is not None else point.low_score
        return cls(
            high_score=high,
            low_score=min(low, high),
            new_track_score=config.new_track_score or min(high + 0.1, 0.99),
            match_iou=config.match_iou,
            low_match_iou=config.low_match_iou,
            tentative_match_iou=config.tentative_match_iou,
            min_hits=config.min_hits,
            lost_ttl_s=config.lost_ttl_s,
        )


@dataclass(frozen=True)
class TrackFrame:
    """What the tracker reports for one frame.

    ``ids``/``boxes``/``scores`` are the confirmed tracks matched in this frame; ``boxes`` are the
    filtered estimate (smooth, for analytics), ``detection_boxes`` the detections they matched
    (for evaluation against ground truth); normalised ``x1, y1, x2, y2``. ``ended`` are ids of
    confirmed tracks that ended now.
    """

    timestamp: float
    ids: np.ndarray
    boxes: np.ndarray
    detection_boxes: np.ndarray
    scores: np.ndarray
    ended: np.ndarray


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) ``x1, y1, x2, y2`` boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def assign(similarity: np.ndarray, minimum: float) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the optimal matching with similarity at least ``minimum``.

    The matching maximises the total similarity over all pairs (Jonker-Volgenant, ``lap``: the
    same optimum as SciPy's ``linear_sum_assignment`` without SciPy's 50 MB of memory); pairs
    below ``minimum`` are dropped afterwards, not excluded from the optimisation.
    """
    if similarity.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    _, row_to_col, _ = lap.lapjv(1.0 - similarity, extend_cost=True)
    rows = np.flatnonzero(row_to_col >= 0)
    cols = row_to_col[rows].astype(np.int64)
    good = similarity[rows, cols] >= minimum
    return rows[good], cols[good]


def _match(
    predicted: np.ndarray,
    boxes: np.ndarray,
    track_mask: np.ndarray,
    det_mask: np.ndarray,
    minimum: float,
    track_used: np.ndarray,
    det_used: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Assign the selected, still free tracks to the selected, still free detections.

    Marks the matched ones as used and returns their (track, detection) indices.
    """
    tracks = np.flatnonzero(track_mask & ~track_used)
    dets = np.flatnonzero(det_mask & ~det_used)
    rows, cols = assign(iou_matrix(predicted[tracks], boxes[dets]), minimum)
    track_used[tracks[rows]] = True
    det_used[dets[cols]] = True
    return tracks[rows], dets[cols]


@dataclass
class ByteTracker:
    """Multi-person tracker; feed it each frame's detections with the frame's timestamp."""

    settings: TrackerSettings
    aspect: float = 16 / 9
    _mean: np.ndarray = field(default_factory=lambda: np.zeros((0, 8)))
    _cov: np.ndarray = field(default_factory=lambda: np.zeros((0, 8, 8)))
    _ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _state: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))
    _hits: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    _last_seen: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _score: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    _detection: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    _next_id: int = 1
    _last_time: float | None = None

    def __len__(self) -> int:
        """Tracks held in memory (tentative, confirmed and lost)."""
        return len(self._ids)

    def update(self, boxes: np.ndarray, scores: np.ndarray, timestamp: float) -> TrackFrame:
        """Advance to ``timestamp`` (seconds) with this frame's detections."""
        s = self.settings
        dt = 0.0 if self._last_time is None else max(timestamp - self._last_time, 0.0)
        self._last_time = timestamp
        self._mean, self._cov = kalman.predict(self._mean, self._cov, dt)
        predicted = kalman.measurements_to_boxes(self._mean, self.aspect)

        keep = scores >= s.low_score
        boxes, scores = boxes[keep].astype(np.float64), scores[keep]
        is_high = scores >= s.high_score
        track_used = np.zeros(len(self._ids), dtype=bool)
        det_used = np.zeros(len(scores), dtype=bool)
        confirmed = self._state == CONFIRMED

        # 1. High-score detections against confirmed tracks (tracked and lost).
        pairs = [_match(predicted, boxes, confirmed, is_high, s.match_iou, track_used, det_used)]
        # 2. Low-score detections only rescue tracks that were seen in the previous frame.
        recent = confirmed & ~track_used & (self._last_seen >= timestamp - dt - 1e-9)
        pairs.append(
            _match(predicted, boxes, recent, ~is_high, s.low_match_iou, track_used, det_used)
        )
        # 3. Remaining high-score detections against tentative tracks.
        tentative = self._state == TENTATIVE
        pairs.append(
            _match(
                predicted, boxes, tentative, is_high, s.tentative_match_iou, track_used, det_used
            )
        )
        track_idx = np.concatenate([tracks for tracks, _ in pairs])
        det_idx = np.concatenate([dets for _, dets in pairs])
        self._correct(track_idx, boxes[det_idx], scores[det_idx], timestamp)

        expired = confirmed & (timestamp - self._last_seen > s.lost_ttl_s)
        ended = self._ids[expired]
        self._remove(expired | (tentative & ~track_used))

        high_left = np.flatnonzero(is_high & ~det_used)
        births = high_left[scores[high_left] >= s.new_track_score]
        self._start(boxes[births], scores[births], timestamp)
        return self._report(timestamp, ended)

    def _correct(self, idx: np.ndarray, boxes: np.ndarray, scores: np.ndarray, now: float) -> None:
        if len(idx) == 0:
            return
        measurements = kalman.boxes_to_measurements(boxes, self.aspect)
        self._mean[idx], self._cov[idx] = kalman.update(
            self._mean[idx], self._cov[idx], measurements
        )
        self._hits[idx] += 1
        self._last_seen[idx] = now
        self._score[idx] = scores
        self._detection[idx] = boxes
        promote = idx[self._hits[idx] >= self.settings.min_hits]
        self._state[promote] = CONFIRMED

    def _remove(self, drop: np.ndarray) -> None:
        if not drop.any():
            return
        keep = ~drop
        self._mean, self._cov = self._mean[keep], self._cov[keep]
        self._ids, self._state, self._hits = self._ids[keep], self._state[keep], self._hits[keep]
        self._last_seen, self._score = self._last_seen[keep], self._score[keep]
        self._detection = self._detection[keep]

    def _start(self, boxes: np.ndarray, scores: np.ndarray, now: float) -> None:
        count = len(boxes)
        if count == 0:
            return
        mean, cov = kalman.initiate(kalman.boxes_to_measurements(boxes, self.aspect))
        ids = np.arange(self._next_id, self._next_id + count, dtype=np.int64)
        self._next_id += count
        state = np.full(count, CONFIRMED if self.settings.min_hits <= 1 else TENTATIVE, np.int8)
        self._mean, self._cov = np.concatenate([self._mean, mean]), np.concatenate([self._cov, cov])
        self._ids = np.concatenate([self._ids, ids])
        self._state = np.concatenate([self._state, state])
        self._hits = np.concatenate([self._hits, np.ones(count, np.int32)])
        self._last_seen = np.concatenate([self._last_seen, np.full(count, now)])
        self._score = np.concatenate([self._score, scores.astype(np.float32)])
        self._detection = np.concatenate([self._detection, boxes])

    def _report(self, now: float, ended: np.ndarray) -> TrackFrame:
        confirmed = self._state == CONFIRMED
        active = confirmed & (self._last_seen == now)
        boxes = kalman.measurements_to_boxes(self._mean[active], self.aspect)
        return TrackFrame(
            timestamp=now,
            ids=self._ids[active].copy(),
            boxes=np.clip(boxes, 0.0, 1.0).astype(np.float32),
            detection_boxes=self._detection[active].astype(np.float32),
            scores=self._score[active].copy(),
            ended=ended,
        )

    def moving(self, speed: float) -> bool:
        """Whether any confirmed track moves faster than ``speed`` frame heights per second."""
        confirmed = self._state == CONFIRMED
        if not confirmed.any():
            return False
        velocity = self._mean[confirmed, 4:6]
        return bool((np.hypot(velocity[:, 0], velocity[:, 1]) > speed).any())

    def confirmed_count(self) -> int:
        return int((self._state == CONFIRMED).sum())

    def tentative_count(self) -> int:
        """Tracks born from a detection and not yet confirmed (``min_hits``)."""
        return int((self._state == TENTATIVE).sum())

    def end_all(self, now: float) -> np.ndarray:
        """End every confirmed track (shutdown, or a reset); returns their ids."""
        ended = self._ids[self._state == CONFIRMED].copy()
        self._remove(np.ones(len(self._ids), dtype=bool))
        self._last_time = now
        return ended

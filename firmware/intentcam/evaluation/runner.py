"""Tracking accuracy against ground truth: ours and a peer tracker on the same detections.

The detector runs once over the sequence; its boxes (down to the tracker's low score) feed both
our tracker and Roboflow's ``trackers`` ByteTrack, configured with the same thresholds and the
same lost-track lifetime, so the comparison is of the trackers alone. MOTA, IDF1, HOTA, ID switches,
precision and recall come from ``trackers.eval`` (TrackEval-parity implementation). Line counts use
the daemon's own line logic on the ground-truth tracks, our tracks and the peer's tracks alike.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from intentcam.analytics.geometry import foot_points, in_view_units
from intentcam.analytics.lines import IN, OUT, LineCounter
from intentcam.config import AnalyticsConfig, LineConfig
from intentcam.detect.base import PersonDetector
from intentcam.detect.detections import Detections
from intentcam.errors import UserError
from intentcam.evaluation.peer import PeerTracker
from intentcam.evaluation.sequence import Sequence
from intentcam.progress import Progress, no_progress
from intentcam.track.bytetrack import ByteTracker, TrackerSettings
from intentcam.track.sessions import RelinkSettings, SessionTokens

#: Per frame: (frame number, ids, normalised boxes).
TrackRows = list[tuple[int, np.ndarray, np.ndarray]]


@dataclass
class Detected:
    frames: list[int]
    detections: list[Detections]
    seconds: float


def detect_sequence(
    sequence: Sequence,
    detector: PersonDetector,
    low_score: float,
    every: int = 1,
    progress: Progress = no_progress,
) -> Detected:
    """Run the detector over every ``every``-th frame of the sequence (1-based frame numbers)."""
    capture = cv2.VideoCapture(str(sequence.video))
    if not capture.isOpened():
        raise UserError(f"{sequence.video}: cannot open video")
    frames, detections = [], []
    seconds = 0.0

    for number in progress(iter(range(1, sequence.length + 1)), sequence.length, "detect"):
        ok, image = capture.read()
        if not ok:
            break
        if (number - 1) % every:
            continue
        started = time.perf_counter()
        detections.append(detector.detect(image, min_score=low_score))
        seconds += time.perf_counter() - started
        frames.append(number)
    capture.release()
    if not frames:
        raise UserError(f"{sequence.video}: no decodable frames")
    return Detected(frames, detections, seconds)


def run_ours(
    detected: Detected,
    settings: TrackerSettings,
    aspect: float,
    fps: float,
    relink: RelinkSettings | None = None,
) -> tuple[TrackRows, float]:
    """Our tracker and session tokens, as the daemon runs them: one id per token, so a track
    re-linked across a break (``relink``) is one identity here too."""
    tracker = ByteTracker(settings, aspect=aspect)
    tokens = SessionTokens(relink=relink)
    numbers: dict[str, int] = {}
    rows: TrackRows = []
    started = time.perf_counter()
    for number, detections in zip(detected.frames, detected.detections):
        now = number / fps
        tracked = tracker.update(detections.boxes, detections.scores, now)
        tokens.end(tracked.ended, now)
        feet = in_view_units(foot_points(tracked.boxes), aspect) if len(tracked.ids) else None
        assigned, _ = tokens.assign(tracked.ids, now, feet)
        ids = np.array([numbers.setdefault(t, len(numbers) + 1) for t in assigned], dtype=np.int64)
        # The matched detection boxes, as the peer reports them: a like-for-like comparison.
        rows.append((number, ids, tracked.detection_boxes.astype(np.float64)))
    return rows, time.perf_counter() - started


def run_peer(
    detected: Detected, settings: TrackerSettings, sequence: Sequence, every: int
) -> tuple[TrackRows, float]:
    """The peer tracker (:mod:`intentcam.evaluation.peer`); timestamps in seconds like ours."""
    peer = PeerTracker(settings, sequence.width, sequence.height, sequence.fps / every)
    rows: TrackRows = []
    started = time.perf_counter()
    for number, detections in zip(detected.frames, detected.detections):
        ids, boxes = peer.update(detections, number / sequence.fps)
        rows.append((number, ids, boxes))
    return rows, time.perf_counter() - started


def gt_rows(sequence: Sequence, frames: list[int]) -> TrackRows:
    """Ground-truth ids and normalised boxes for the evaluated frames."""
    scale = np.array([sequence.width, sequence.height, sequence.width, sequence.height], float)
    rows: TrackRows = []
    for number in frames:
        at = sequence.gt[sequence.gt[:, 0] == number]
        boxes = np.column_stack([at[:, 2], at[:, 3], at[:, 2] + at[:, 4], at[:, 3] + at[:, 5]])
        rows.append((number, at[:, 1].astype(np.int64), boxes / scale))
    return rows


def count_lines(
    rows: TrackRows,
    lines: list[LineConfig],
    aspect: float,
    fps: float,
    hysteresis: float,
    lost_s: float,
) -> dict[str, dict[str, int]]:
    """Crossings per line and direction; an id ends after ``lost_s`` unseen or at the end."""
    counters = [LineCounter(line.id, line.oriented_points(), aspect, hysteresis) for line in lines]
    last_seen: dict[int, float] = {}
    now = 0.0
    for number, ids, boxes in rows:
        now = number / fps
        feet = foot_points(boxes) if len(ids) else np.zeros((0, 2))
        tokens = [str(i) for i in ids.tolist()]
        for counter in counters:
            counter.observe(tokens, feet, now)
        for track_id in ids.tolist():
            last_seen[track_id] = now
        for track_id in [t for t, seen in last_seen.items() if now - seen > lost_s]:
            del last_seen[track_id]
            for counter in counters:
                counter.end(str(track_id), now)
    for track_id in list(last_seen):
        for counter in counters:
            counter.end(str(track_id), now)
    return {counter.id: dict(counter.totals) for counter in counters}


def write_mot(path: Path, rows: TrackRows, width: int, height: int, *, truth: bool = False) -> None:
    """MOTChallenge text; ground truth rows say ``conf=1, class=1 (pedestrian), visibility=1``."""
    scale = np.array([width, height, width, height], float)
    tail = "1,1,1.0" if truth else "1,-1,-1,-1"
    with path.open("w", encoding="utf-8") as handle:
        for number, ids, boxes in rows:
            for track_id, box in zip(ids.tolist(), boxes * scale):
                x1, y1, x2, y2 = box.tolist()
                handle.write(
                    f"{number},{track_id},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{tail}\n"
                )


def mot_metrics(truth: TrackRows, rows: TrackRows, sequence: Sequence) -> dict[str, float | int]:
    """MOTA, IDF1, HOTA, ID switches, recall, precision from ``trackers.eval``."""
    try:
        from trackers.eval import evaluate_mot_sequence
    except ImportError as exc:
        raise UserError(
            f"metrics need the 'trackers' package ({exc}); install intentcam[eval]"
        ) from None
    if not any(len(ids) for _, ids, _ in rows):
        # Nobody tracked at all: every ground-truth box is missed (MOTA = 1 - FN / GT = 0).
        return {
            "mota": 0.0,
            "idf1": 0.0,
            "hota": 0.0,
            "id_switches": 0,
            "recall": 0.0,
            "precision": 0.0,
        }
    with tempfile.TemporaryDirectory(prefix="intentcam-eval-") as folder:
        gt_path, tracker_path = Path(folder) / "gt.txt", Path(folder) / "tracker.txt"
        write_mot(gt_path, truth, sequence.width, sequence.height, truth=True)
        write_mot(tracker_path, rows, sequence.width, sequence.height)
        result = evaluate_mot_sequence(gt_path, tracker_path, metrics=["CLEAR", "HOTA", "Identity"])
    clear, identity, hota = result.CLEAR, result.Identity, result.HOTA
    assert clear is not None and identity is not None and hota is not None  # all three asked for
    return {
        "mota": round(float(clear.MOTA), 4),
        "idf1": round(float(identity.IDF1), 4),
        "hota": round(float(hota.HOTA), 4),
        "id_switches": int(clear.IDSW),
        "recall": round(float(clear.CLR_Re), 4),
        "precision": round(float(clear.CLR_Pr), 4),
    }


def count_error(gt: dict[str, dict[str, int]], pred: dict[str, dict[str, int]]) -> float | None:
    """``sum(|pred - gt|) / sum(gt)`` over lines and directions; ``None`` without GT crossings."""
    total = sum(gt[line][d] for line in gt for d in (IN, OUT))
    if total == 0:
        return None
    return round(sum(abs(pred[line][d] - gt[line][d]) for line in gt for d in (IN, OUT)) / total, 4)


@dataclass
class Evaluation:
    sequence: Sequence
    settings: TrackerSettings
    analytics: AnalyticsConfig
    every: int = 1
    peer: bool = True
    #: Token re-linking as configured (``None``: off, each track its own identity).
    relink: RelinkSettings | None = None
    results: dict[str, Any] = field(default_factory=dict)

    def run(self, detected: Detected) -> dict[str, Any]:
        seq = self.sequence
        aspect = seq.width / seq.height
        truth = gt_rows(seq, detected.frames)
        lost_s = self.settings.lost_ttl_s
        gt_counts = count_lines(
            truth, seq.lines, aspect, seq.fps, self.analytics.line_hysteresis, lost_s
        )
        ours, ours_s = run_ours(detected, self.settings, aspect, seq.fps, self.relink)
        # A token waits relink_s after its track ended before its session (and its line state)
        # ends in the daemon; the line count of our rows follows the same rule.
        waits = self.settings.lost_ttl_s + (self.relink.seconds if self.relink else 0.0)
        report = self._report(truth, ours, ours_s, detected, gt_counts, waits)
        report = {
            "sequence": seq.name,
            "frames": len(detected.frames),
            "every": self.every,
            "fps_sequence": seq.fps / self.every,
            **report,
        }
        if self.peer:
            peer_rows, peer_s = run_peer(detected, self.settings, seq, self.every)
            report["peer"] = {
                "name": "trackers.ByteTrackTracker",
                **self._report(
                    truth, peer_rows, peer_s, detected, gt_counts, self.settings.lost_ttl_s
                ),
            }
        return report

    def _report(
        self,
        truth: TrackRows,
        rows: TrackRows,
        track_s: float,
        detected: Detected,
        gt_counts: dict[str, dict[str, int]],
        lost_s: float,
    ) -> dict[str, Any]:
        seq = self.sequence
        counts = count_lines(
            rows,
            seq.lines,
            seq.width / seq.height,
            seq.fps,
            self.analytics.line_hysteresis,
            lost_s,
        )
        return {
            **mot_metrics(truth, rows, seq),
            "lines": {line: {"gt": gt_counts[line], "pred": counts[line]} for line in gt_counts},
            "count_error": count_error(gt_counts, counts),
            "fps": round(len(detected.frames) / max(detected.seconds + track_s, 1e-9), 2),
            "tracker_fps": round(len(detected.frames) / max(track_s, 1e-9), 1),
        }

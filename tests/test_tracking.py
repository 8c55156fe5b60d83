"""The tracker (synthetic motion and real video), session tokens, and the 24/7 memory bound."""

from __future__ import annotations

import gc

import cv2
import numpy as np
import pytest

from intentcam.analytics.geometry import foot_points
from intentcam.config import TrackerConfig, load_config
from intentcam.detect import build_detector
from intentcam.detect.detections import Detections
from intentcam.models.manifest import OperatingPoint
from intentcam.track import ByteTracker, SessionTokens, TrackerSettings
from intentcam.view import CameraView
from tests.data import MALL

#: A detector calibration for synthetic tracks: scores well above and below the thresholds.
POINT = OperatingPoint(score_threshold=0.55, high_score=0.45, low_score=0.3)


def box_at(cx: float, cy: float, w: float = 0.05, h: float = 0.15) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def run(tracker: ByteTracker, frames: list[list[tuple[list[float], float]]], times: list[float]):
    out = []
    for detections, now in zip(frames, times):
        boxes = np.array([b for b, _ in detections], dtype=np.float32).reshape(-1, 4)
        scores = np.array([s for _, s in detections], dtype=np.float32)
        out.append(tracker.update(boxes, scores, now))
    return out


def test_two_walkers_keep_their_ids_and_confirm_after_min_hits() -> None:
    tracker = ByteTracker(TrackerSettings.from_config(TrackerConfig(min_hits=3), POINT), aspect=1.0)
    times = [i * 0.1 for i in range(30)]
    frames = [
        [(box_at(0.2 + 0.01 * i, 0.5), 0.8), (box_at(0.8 - 0.01 * i, 0.3), 0.7)] for i in range(30)
    ]
    out = run(tracker, frames, times)
    assert len(out[0].ids) == 0 and len(out[1].ids) == 0  # tentative until the third hit
    assert len(out[2].ids) == 2
    ids = {tuple(sorted(frame.ids.tolist())) for frame in out[2:]}
    assert len(ids) == 1  # nobody swapped or re-numbered


def test_low_score_detections_keep_a_track_alive() -> None:
    tracker = ByteTracker(
        TrackerSettings.from_config(
            TrackerConfig(high_score=0.5, low_score=0.2, min_hits=1), POINT
        ),
        aspect=1.0,
    )
    scores = [0.8] * 5 + [0.3] * 5 + [0.8] * 5  # the person is half occluded for half a second
    frames = [[(box_at(0.2 + 0.01 * i, 0.5), score)] for i, score in enumerate(scores)]
    out = run(tracker, frames, [i * 0.1 for i in range(15)])
    assert {int(frame.ids[0]) for frame in out} == {1}


def test_lost_tracks_end_after_their_lifetime_in_seconds_not_frames() -> None:
    settings = TrackerSettings.from_config(TrackerConfig(min_hits=1, lost_ttl_s=1.0), POINT)
    for fps in (5.0, 30.0):
        tracker = ByteTracker(settings, aspect=1.0)
        dt = 1 / fps
        seen = int(fps)
        frames = [[(box_at(0.5, 0.5), 0.9)]] * seen + [[]] * int(3 * fps)
        out = run(tracker, frames, [i * dt for i in range(len(frames))])
        ended_at = next(i for i, frame in enumerate(out) if len(frame.ended))
        gone = (ended_at - (seen - 1)) * dt
        assert 1.0 < gone <= 1.0 + 2 * dt, (fps, gone)
        assert len(tracker) == 0


def test_a_person_coasting_through_a_short_gap_keeps_the_id() -> None:
    tracker = ByteTracker(
        TrackerSettings.from_config(TrackerConfig(min_hits=1, lost_ttl_s=1.0), POINT), aspect=1.0
    )
    frames = [[(box_at(0.1 + 0.02 * i, 0.5), 0.9)] if not 10 <= i < 15 else [] for i in range(30)]
    out = run(tracker, frames, [i * 0.1 for i in range(30)])
    assert {int(i) for frame in out for i in frame.ids} == {1}


def test_session_tokens_are_random_fresh_and_rotate() -> None:
    tokens = SessionTokens(max_session_s=10.0)
    first, _ = tokens.assign(np.array([1, 2]), 0.0)
    assert first[0] != first[1] and all(len(t) == 32 for t in first)  # 128 bits, hex
    again, ended = tokens.assign(np.array([1, 2]), 5.0)
    assert again == first and ended == []
    rotated, ended = tokens.assign(np.array([1]), 10.0)
    assert rotated[0] != first[0] and [e.reason for e in ended] == ["rotated"]
    gone = tokens.end(np.array([1, 2]), 11.0)
    assert {e.token for e in gone} == {rotated[0], first[1]} and len(tokens) == 0
    # A new track for the same id never gets an old token back.
    fresh, _ = tokens.assign(np.array([1]), 12.0)
    assert fresh[0] not in first + rotated


def test_tokens_do_not_depend_on_the_person() -> None:
    """Same boxes, same timestamps, two runs: different tokens (nothing derived from input)."""
    boxes = np.array([box_at(0.5, 0.5)], dtype=np.float32)
    runs = []
    for _ in range(2):
        tracker, sessions = (
            ByteTracker(TrackerSettings.from_config(TrackerConfig(min_hits=1), POINT)),
            SessionTokens(),
        )
        frame = tracker.update(boxes, np.array([0.9], np.float32), 0.0)
        runs.append(sessions.assign(frame.ids, 0.0)[0][0])
    assert runs[0] != runs[1]


@pytest.fixture(scope="module")
def mall_detections(model_dir):
    """Detections of the 400 Mall frames (1x1 tiling keeps this fast)."""
    settings = load_config(
        None,
        overrides={
            "paths": {"model_dir": str(model_dir)},
            "detector": {"tiling": "1x1", "threads": 2},
        },
    )
    detector = build_detector(settings)
    capture = cv2.VideoCapture(str(MALL))
    detections = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        detections.append(detector.detect(image, min_score=0.3))
    assert len(detections) == 400
    return detections


@pytest.mark.slow
def test_soak_20000_frames_memory_stays_flat(mall_detections, tmp_path) -> None:
    """A 24/7 run in miniature: the Mall clip looped for 20,000 frames through tracking and
    analytics (with a line, zones and windows): live objects and traced memory stay bounded."""
    config = tmp_path / "soak.toml"
    config.write_text(
        """
[analytics]
window_s = 60
heatmap_window_s = 300
[[lines]]
id = "mid"
points = [[0.0, 0.6], [1.0, 0.6]]
[[zones]]
id = "left"
kind = "display"
points = [[0.0, 0.3], [0.5, 0.3], [0.5, 1.0], [0.0, 1.0]]
[[zones]]
id = "right"
points = [[0.5, 0.3], [1.0, 0.3], [1.0, 1.0], [0.5, 1.0]]
""",
        encoding="utf-8",
    )
    view = CameraView.from_settings(
        load_config(config), 640 / 480, POINT, wall_origin=1_700_000_000.0
    )
    live = np.zeros(20_000, dtype=np.int64)
    records = 0
    heap = {}
    for frame in range(20_000):
        detections = mall_detections[frame % 400]
        records += len(view.process(detections, frame * 0.5))  # the Mall is sampled at ~2 Hz
        live[frame] = view.live_objects()
        if frame in (4_999, 19_999):
            gc.collect()
            heap[frame] = len(gc.get_objects())
    assert records > 150  # 10,000 s of clip time: ~166 counts windows, heatmaps, sessions
    first_loop_peak = live[:400].max()
    assert live.max() <= first_loop_peak * 1.5, (first_loop_peak, live.max())
    assert live[-400:].mean() <= live[400:800].mean() * 1.2
    # Every Python object alive at frame 5,000 is about all there ever is: no growth with time.
    assert heap[19_999] <= heap[4_999] + 500, heap


def _walk_through_a_gap(relink_s: float, tmp_path) -> dict[str, int]:
    """One person walks down across a line at y=0.5; the detector misses them for 2.5 s
    around it (the tracker gives up after 1.5 s), then finds them on the far side."""
    config = tmp_path / "relink.toml"
    config.write_text(
        f"""
[tracker]
relink_s = {relink_s}
lost_ttl_s = 1.5
[analytics]
window_s = 60
[[lines]]
id = "door"
points = [[0.0, 0.5], [1.0, 0.5]]
""",
        encoding="utf-8",
    )
    view = CameraView.from_settings(load_config(config), 1.0, POINT, wall_origin=1_700_000_000.0)
    records = []
    for step in range(80):  # 8 s at 10 fps, 0.1 frame heights per second
        now = step * 0.1
        y = 0.1 + 0.1 * now
        seen = not (3.0 <= now < 5.5)
        boxes = np.array([box_at(0.5, y - 0.075)] if seen else [], dtype=np.float32).reshape(-1, 4)
        scores = np.full(len(boxes), 0.9, dtype=np.float32)
        records += view.process(Detections(boxes, scores), now)
    records += view.finish()
    counts = [r for r in records if r["type"] == "counts"]
    return {
        direction: sum(c["lines"]["door"][direction] for c in counts) for direction in ("in", "out")
    }


def test_a_track_broken_across_a_line_counts_once_with_relinking(tmp_path) -> None:
    assert _walk_through_a_gap(relink_s=0.0, tmp_path=tmp_path) == {"in": 0, "out": 0}
    assert _walk_through_a_gap(relink_s=3.0, tmp_path=tmp_path) == {"in": 1, "out": 0}


def feet_at(cx: float, cy: float) -> np.ndarray:
    """The foot point of :func:`box_at` (aspect 1, so frame heights in both directions)."""
    return foot_points(np.array([box_at(cx, cy)], dtype=np.float32))


def test_relinking_never_hands_a_token_to_someone_far_away() -> None:
    from intentcam.track.sessions import RelinkSettings

    # Within 1.5 s one may walk 0.05 + 0.2 * 1.5 = 0.35 frame heights: 0.1 is near, 0.8 is not.
    tokens = SessionTokens(relink=RelinkSettings(seconds=3.0, speed=0.2, margin=0.05))
    first, _ = tokens.assign(np.array([1]), 0.0, feet_at(0.1, 0.5))
    assert tokens.end(np.array([1]), 1.0) == []  # waits for a new track
    far, _ = tokens.assign(np.array([2]), 1.5, feet_at(0.9, 0.5))
    near, _ = tokens.assign(np.array([3]), 1.5, feet_at(0.2, 0.5))
    assert far != first and near == first and tokens.relinked == 1
    ended = tokens.end(np.array([]), 10.0)
    assert ended == []  # the first token lives on as track 3; nothing waits any more
    assert {e.token for e in tokens.end_all(11.0)} == {far[0], first[0]}

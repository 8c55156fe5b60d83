"""The SSD person detector on real images and video, tiling and the NMS merge."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intentcam.detect import SsdPersonDetector, build_detector
from intentcam.detect.tiling import (
    BOTTOM,
    LEFT,
    RIGHT,
    TOP,
    choose_layout,
    fragment_candidates,
    join_seam_halves,
    merge_boxes,
    seam_sides,
    tile_rects,
)
from intentcam.track.bytetrack import iou_matrix
from tests.cli import run_cli
from tests.data import CONCOURSE, DATA, MALL

#: These tests are about the SSD family's tiling (its box limit needs the whole-frame pass).
SSD_V1 = "ssd_mobilenet_v1_coco_quant"


def frames_of(path: Path, count: int, step: int = 1) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    index = 0
    while len(frames) < count:
        ok, image = capture.read()
        assert ok, f"{path} ended early"
        if index % step == 0:
            frames.append(image)
        index += 1
    capture.release()
    return frames


def test_finds_several_people_on_the_kite_beach(detector: SsdPersonDetector) -> None:
    image = cv2.imread(str(DATA / "kite_and_cold.jpg"))
    detections = detector.detect(image)
    assert len(detections) >= 5
    assert detections.boxes.dtype == np.float32
    assert ((detections.boxes >= 0) & (detections.boxes <= 1)).all()
    assert (detections.boxes[:, 2] > detections.boxes[:, 0]).all()
    assert (np.diff(detections.scores) <= 0).all()  # best first


def test_finds_exactly_grace_hopper(detector: SsdPersonDetector) -> None:
    image = cv2.imread(str(DATA / "grace_hopper.bmp"))
    detections = detector.detect(image)
    assert len(detections) == 1
    x1, y1, x2, y2 = detections.boxes[0]
    assert (x2 - x1) > 0.7 and (y2 - y1) > 0.7  # the whole portrait, not a fragment


def test_tiling_finds_more_people_in_crowds(make_settings) -> None:
    frames = frames_of(MALL, 8, step=25) + frames_of(CONCOURSE, 8, step=20)
    found = {}
    for layout in ("1x1", "2x2"):
        detector = build_detector(
            make_settings(detector={"model": SSD_V1, "tiling": layout, "threads": 2})
        )
        found[layout] = sum(len(detector.detect(frame)) for frame in frames)
        if layout == "2x2":
            assert detector.last.invokes == 5  # four tiles and the whole frame
    assert found["2x2"] >= 1.5 * found["1x1"], found


def test_min_box_size_drops_small_boxes(make_settings) -> None:
    frame = frames_of(CONCOURSE, 1)[0]
    small = build_detector(
        make_settings(detector={"model": SSD_V1, "tiling": "2x1", "min_box_size": 0.0})
    )
    large = build_detector(
        make_settings(detector={"model": SSD_V1, "tiling": "2x1", "min_box_size": 0.12})
    )
    all_boxes = small.detect(frame)
    kept = large.detect(frame)
    heights = all_boxes.boxes[:, 3] - all_boxes.boxes[:, 1]
    assert len(kept) < len(all_boxes)
    assert len(kept) <= int((heights >= 0.12).sum())


def test_low_min_score_returns_more_candidates(detector: SsdPersonDetector) -> None:
    frame = frames_of(MALL, 1)[0]
    assert len(detector.detect(frame, min_score=0.3)) > len(detector.detect(frame))


# --- tiling geometry ----------------------------------------------------------------------


def test_tiles_cover_the_frame_with_the_requested_overlap() -> None:
    rects = tile_rects(1280, 720, "2x2", 0.2, full_frame=False)
    assert len(rects) == 4
    covered = np.zeros((720, 1280), dtype=bool)
    for x1, y1, x2, y2 in rects:
        covered[y1:y2, x1:x2] = True
    assert covered.all()
    left, right = rects[0], rects[1]
    tile_width = left[2] - left[0]
    assert abs((left[2] - right[0]) / tile_width - 0.2) < 0.01


def test_full_frame_pass_is_added_to_multi_tile_layouts_only() -> None:
    assert len(tile_rects(640, 480, "1x1", 0.2)) == 1
    rects = tile_rects(640, 480, "2x1", 0.2)
    assert len(rects) == 3 and tuple(rects[-1]) == (0, 0, 640, 480)


def test_auto_layout_follows_aspect_ratio_and_size() -> None:
    assert choose_layout(1280, 720, 300, 0.2) == "2x1"  # wide: two near-square tiles
    assert choose_layout(640, 480, 300, 0.2) == "2x2"  # 4:3, large enough for four tiles
    assert choose_layout(320, 240, 300, 0.2) == "1x1"  # tiles would only be upscaled
    assert choose_layout(300, 300, 300, 0.2) == "1x1"


def test_seam_fragments_and_large_boxes_are_fragment_candidates() -> None:
    rect = np.array([0, 0, 700, 720])  # left tile of a 1280-wide frame: its right edge is a seam
    boxes = np.array(
        [
            [0.5, 0.2, 0.995, 0.4],  # touches the seam
            [0.0, 0.2, 0.1, 0.4],  # touches the frame border only
            [0.3, 0.1, 0.5, 0.8],  # taller than half the tile
            [0.3, 0.3, 0.4, 0.5],
        ],
        dtype=np.float32,
    )
    flags = fragment_candidates(boxes, rect, 1280, 720)
    assert flags.tolist() == [True, False, True, False]
    whole = np.array([0, 0, 1280, 720])
    assert not fragment_candidates(boxes, whole, 1280, 720).any()


def test_merge_drops_cross_tile_duplicates_and_fragments_only() -> None:
    boxes = np.array(
        [
            [0.40, 0.10, 0.50, 0.50],  # person seen in tile 0
            [0.41, 0.10, 0.50, 0.51],  # the same person in tile 1: duplicate
            [0.45, 0.10, 0.50, 0.30],  # a fragment from tile 2, at a seam, inside person 0
            [0.42, 0.12, 0.47, 0.30],  # a small whole person inside person 0's box, tile 3
            [0.80, 0.80, 0.90, 0.95],  # someone else
        ],
        dtype=np.float32,
    )
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.65], dtype=np.float32)
    tiles = np.array([0, 1, 2, 3, 0])
    fragment = np.array([False, False, True, False, False])
    keep = merge_boxes(boxes, scores, tiles, fragment, iou_threshold=0.5)
    assert keep.tolist() == [0, 4, 3]


def test_seam_sides_name_the_inner_edges_a_box_is_cut_by() -> None:
    rect = np.array([0, 400, 700, 960])  # bottom-left tile of 1280x960: seams above and right
    boxes = np.array(
        [
            [0.2, 0.0, 0.5, 0.6],  # cut by the seam above
            [0.0, 0.3, 0.2, 1.0],  # on the frame's left and bottom borders: no seam
            [0.8, 0.0, 1.0, 0.5],  # cut above and on the right
        ],
        dtype=np.float32,
    )
    sides = seam_sides(boxes, rect, 1280, 960)
    assert sides[0].tolist() == [False, True, False, False]
    assert not sides[1].any()
    assert sides[2][[LEFT, TOP, RIGHT, BOTTOM]].tolist() == [False, True, True, False]


def _cut(*names: int) -> list[bool]:
    return [side in names for side in (LEFT, TOP, RIGHT, BOTTOM)]


def test_a_person_cut_in_two_by_a_seam_is_joined_into_one_box() -> None:
    boxes = np.array(
        [
            [0.22, 0.29, 0.46, 0.55],  # upper body, top tile, cut by its bottom edge
            [0.22, 0.45, 0.44, 1.00],  # legs, bottom tile, cut by its top edge
            [0.00, 0.45, 0.08, 0.71],  # someone else, whole
        ],
        dtype=np.float32,
    )
    scores = np.array([0.92, 0.89, 0.30], dtype=np.float32)
    sides = np.array([_cut(BOTTOM), _cut(TOP), _cut()])
    joined, joined_scores, remain = join_seam_halves(boxes, scores, np.array([0, 2, 2]), sides)
    assert remain.tolist() == [True, False, True]
    assert np.allclose(joined[0], [0.22, 0.29, 0.46, 1.0])
    assert joined_scores[remain].tolist() == pytest.approx([0.92, 0.30])


def test_pieces_that_do_not_line_up_or_share_a_tile_stay_apart() -> None:
    sides = np.array([_cut(BOTTOM), _cut(TOP)])
    scores = np.array([0.9, 0.8], dtype=np.float32)
    # Two people one behind the other across the seam, at different places along it.
    apart = np.array([[0.10, 0.30, 0.20, 0.55], [0.18, 0.45, 0.40, 0.90]], dtype=np.float32)
    assert join_seam_halves(apart, scores, np.array([0, 2]), sides)[2].all()
    # Lined up, but found in one tile: two people, not two halves.
    lined_up = np.array([[0.2, 0.3, 0.4, 0.55], [0.2, 0.45, 0.4, 0.9]], dtype=np.float32)
    assert join_seam_halves(lined_up, scores, np.array([1, 1]), sides)[2].all()
    # Not overlapping across the seam: a gap between them.
    gap = np.array([[0.2, 0.1, 0.4, 0.40], [0.2, 0.45, 0.4, 0.9]], dtype=np.float32)
    assert join_seam_halves(gap, scores, np.array([0, 2]), sides)[2].all()


def test_the_four_quarters_of_a_person_on_a_tile_crossing_become_one_box() -> None:
    boxes = np.array(
        [
            [0.40, 0.20, 0.55, 0.55],  # top left, cut right and below
            [0.45, 0.20, 0.60, 0.55],  # top right, cut left and below
            [0.40, 0.45, 0.55, 0.95],  # bottom left, cut right and above
            [0.45, 0.45, 0.60, 0.95],  # bottom right, cut left and above
        ],
        dtype=np.float32,
    )
    sides = np.array([_cut(RIGHT, BOTTOM), _cut(LEFT, BOTTOM), _cut(RIGHT, TOP), _cut(LEFT, TOP)])
    rng = np.random.default_rng(0)
    # Whichever piece scores best (the order of joining follows) and wherever each tile put its
    # edges within a couple of per cent, one box is left.
    for scores in itertools.permutations([0.5, 0.9, 0.6, 0.7]):
        jittered = boxes + rng.uniform(-0.02, 0.02, boxes.shape).astype(np.float32)
        joined, joined_scores, remain = join_seam_halves(
            jittered, np.array(scores, dtype=np.float32), np.arange(4), sides
        )
        assert remain.sum() == 1, scores
        assert np.allclose(joined[remain][0], [*jittered[:, :2].min(0), *jittered[:, 2:].max(0)])
        assert joined_scores[remain][0] == pytest.approx(0.9)


def test_a_shopper_too_tall_for_any_tile_is_one_person_at_any_frame_size(make_settings) -> None:
    """At twice its size the shelf clip is tiled 2x2, and the shopper at the table, taller than
    a tile, is found as an upper body and legs; joined, she is the one box found unscaled."""
    capture = cv2.VideoCapture(str(DATA / "shelf" / "set-b-shoplifting-14.mp4"))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 76)
    ok, image = capture.read()
    capture.release()
    assert ok
    detector = build_detector(make_settings(detector={"threads": 2}))
    large = cv2.resize(image, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_LINEAR)
    assert detector.layout_for(large.shape[1], large.shape[0])[0] == "2x2"
    assert detector.layout_for(image.shape[1], image.shape[0])[0] == "1x1"
    found = {
        name: detector.detect(picture) for name, picture in (("small", image), ("large", large))
    }
    found["near"] = detector.detect(large, near=True)  # a camera watching shelves: untiled
    assert detector.last.layout == "1x1" and detector.last.invokes == 1
    small = found["small"].boxes
    tall = small[small[:, 3] - small[:, 1] > 0.6]
    assert len(tall) == 1
    for name in ("large", "near"):
        matches = iou_matrix(tall, found[name].boxes)[0]
        assert matches.max() > 0.8, name
        assert (matches > 0.1).sum() == 1, f"{name}: one box, not an upper body and legs"


box_strategy = st.tuples(
    st.floats(0, 0.9), st.floats(0, 0.9), st.floats(0.02, 0.5), st.floats(0.02, 0.5)
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(box_strategy, st.floats(0.01, 1.0), st.integers(0, 4), st.booleans()), max_size=30
    )
)
def test_merge_never_keeps_overlapping_pairs(items) -> None:
    boxes = np.array(
        [[x, y, min(x + w, 1), min(y + h, 1)] for (x, y, w, h), *_ in items], dtype=np.float32
    ).reshape(-1, 4)
    scores = np.array([s for _, s, _, _ in items], dtype=np.float32)
    tiles = np.array([t for *_, t, _ in items], dtype=np.int32)
    fragment = np.array([f for *_, f in items], dtype=bool)
    keep = merge_boxes(boxes, scores, tiles, fragment, iou_threshold=0.5)
    assert len(set(keep.tolist())) == len(keep)
    assert (np.diff(scores[keep]) <= 0).all()
    kept = boxes[keep]
    for i in range(len(kept)):
        for j in range(i + 1, len(kept)):
            a, b = kept[i], kept[j]
            inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(
                0, min(a[3], b[3]) - max(a[1], b[1])
            )
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            assert inter / union <= 0.5 + 1e-6


# --- the installer's command ----------------------------------------------------------------


def test_detect_cli_json(config_file) -> None:
    config = config_file()
    kite = run_cli("detect", str(DATA / "kite_and_cold.jpg"), "--json", "--config", str(config))
    assert kite.returncode == 0, kite.stderr
    report = json.loads(kite.stdout)
    assert report["count"] == len(report["people"]) >= 5
    grace = run_cli("detect", str(DATA / "grace_hopper.bmp"), "--json", "--config", str(config))
    assert json.loads(grace.stdout)["count"] == 1


def test_detect_cli_bad_images_are_one_line_errors(tmp_path: Path, config_file) -> None:
    config = config_file()
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes((DATA / "kite_and_cold.jpg").read_bytes()[:4000])
    for path, expected in (
        (corrupt, "not a readable image"),
        (tmp_path / "missing.jpg", "file not found"),
    ):
        result = run_cli("detect", str(path), "--config", str(config))
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith(f"intentcam: error: {path}: {expected}")
        assert "Traceback" not in result.stderr

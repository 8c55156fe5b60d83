"""Tiling a frame for a small-input detector, and merging the tiles' boxes back together.

A 300x300 SSD sees a 1280x720 frame at a quarter of its resolution and returns at most 10 boxes,
so small and numerous people are lost. Overlapping tiles give each invoke a smaller area; the
boxes are mapped back to frame coordinates and merged with NMS. A person cut by a tile seam shows
up whole in the overlapping neighbour and as a fragment in the first tile; the fragment is removed
because it lies mostly inside the whole box from another tile. A person too large to be whole in
any tile is found in pieces, one per tile, each cut by its tile's edge; the pieces are joined.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

Layout = Literal["1x1", "2x1", "2x2"]
LAYOUTS: dict[str, tuple[int, int]] = {"1x1": (1, 1), "2x1": (2, 1), "2x2": (2, 2)}


def tile_rects(
    width: int, height: int, layout: str, overlap: float, full_frame: bool = True
) -> np.ndarray:
    """Pixel rectangles ``(T, 4)`` as ``x1, y1, x2, y2``: the tiles row-major, then the frame.

    Neighbouring tiles share ``overlap`` of a tile's width (or height). With ``full_frame`` a
    multi-tile layout also gets a pass over the whole frame: people too big for one tile are found
    whole there, and their seam fragments from the tiles are merged away.
    """
    cols, rows = LAYOUTS[layout]
    xs = _spans(width, cols, overlap)
    ys = _spans(height, rows, overlap)
    rects = [(x1, y1, x2, y2) for (y1, y2) in ys for (x1, x2) in xs]
    if full_frame and len(rects) > 1:
        rects.append((0, 0, width, height))
    return np.array(rects, dtype=np.int32)


def _spans(length: int, count: int, overlap: float) -> list[tuple[int, int]]:
    if count == 1:
        return [(0, length)]
    size = length / (count - (count - 1) * overlap)
    step = size * (1 - overlap)
    spans = []
    for i in range(count):
        start = int(round(i * step))
        end = length if i == count - 1 else int(round(i * step + size))
        spans.append((start, end))
    return spans


def choose_layout(width: int, height: int, input_size: int, overlap: float) -> Layout:
    """The ``auto`` layout: tiles closest to the model's square input, as many as stay sharp.

    Among 1x1, 2x1 and 2x2, keep layouts whose tiles are at least 0.8x the model input on both
    sides (smaller tiles would only be upscaled), then take the one whose tile aspect ratio is
    closest to square (least distortion when resized), preferring more tiles on a tie.
    """
    candidates: list[tuple[float, int, Layout]] = []
    for name, (cols, rows) in LAYOUTS.items():
        tile_w = width / (cols - (cols - 1) * overlap)
        tile_h = height / (rows - (rows - 1) * overlap)
        if name != "1x1" and min(tile_w, tile_h) < 0.8 * input_size:
            continue
        distortion = round(abs(math.log(tile_w / tile_h)), 2)
        candidates.append((distortion, -cols * rows, name))  # type: ignore[arg-type]
    return min(candidates)[2]


#: Column order of :func:`seam_sides`.
LEFT, TOP, RIGHT, BOTTOM = range(4)


def seam_sides(
    tile_boxes: np.ndarray, rect: np.ndarray, width: int, height: int, margin: float = 0.02
) -> np.ndarray:
    """``(N, 4)`` bool: which of its tile's edges (left, top, right, bottom) each box is cut by.

    Only edges inside the frame count (a frame border is no seam), so the whole frame's boxes
    have none. ``tile_boxes`` are tile-normalised ``x1, y1, x2, y2``; a box is cut by an edge
    when it reaches within ``margin`` of it.
    """
    x1, y1, x2, y2 = (int(v) for v in rect)
    sides = np.zeros((len(tile_boxes), 4), dtype=bool)
    sides[:, LEFT] = (x1 > 0) & (tile_boxes[:, 0] <= margin)
    sides[:, TOP] = (y1 > 0) & (tile_boxes[:, 1] <= margin)
    sides[:, RIGHT] = (x2 < width) & (tile_boxes[:, 2] >= 1 - margin)
    sides[:, BOTTOM] = (y2 < height) & (tile_boxes[:, 3] >= 1 - margin)
    return sides


def fragment_candidates(
    tile_boxes: np.ndarray,
    rect: np.ndarray,
    width: int,
    height: int,
    margin: float = 0.02,
    large: float = 0.5,
    sides: np.ndarray | None = None,
) -> np.ndarray:
    """Which tile boxes (tile-normalised ``x1, y1, x2, y2``) may be part of a bigger person.

    A box cut by a seam (:func:`seam_sides`; pass ``sides`` where they are known already) may
    be a person cut by the seam. A box at least ``large`` of the tile's height may be a body
    part of a person too big for the tile: tiles are there for small people, the whole-frame
    pass finds the big ones. The whole frame itself yields no candidates.
    """
    x1, y1, x2, y2 = (int(v) for v in rect)
    if x1 == 0 and y1 == 0 and x2 == width and y2 == height:
        return np.zeros(len(tile_boxes), dtype=bool)
    if sides is None:
        sides = seam_sides(tile_boxes, rect, width, height, margin)
    return ((tile_boxes[:, 3] - tile_boxes[:, 1]) >= large) | sides.any(axis=1)


def join_seam_halves(
    boxes: np.ndarray,
    scores: np.ndarray,
    tile_ids: np.ndarray,
    sides: np.ndarray,
    *,
    min_span_iou: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Join the pieces of a person cut by a seam into one box, as SAHI's box merging does.

    A person larger than the overlap between two tiles is whole in neither: each tile finds the
    part on its side, cut by its edge, and without a whole-frame pass nothing else finds the
    person (at a shelf near the camera, a 1280x960 picture cuts standing shoppers in two). Two
    boxes (frame-normalised) from different tiles are one person when the first is cut by its
    tile's edge on the side facing the second and the second by the opposite edge, they overlap
    across the seam, and their spans along it agree (1-D IoU at least ``min_span_iou``: the
    halves of one body are about as wide; two people one behind the other rarely line up so).
    The joined box is their union with the better score, in the better box's place; joining
    repeats, so the four quarters of a person on a 2x2 crossing join too. Returns the boxes and
    scores (joined ones changed, the others as they were) and which of them remain: index the
    boxes' other per-box arrays with it.
    """
    alive = np.ones(len(boxes), dtype=bool)
    if not sides.any():  # one tile, or nobody on a seam: every frame of most cameras
        return boxes, scores, alive
    boxes, scores, sides = boxes.copy(), scores.copy(), sides.copy()
    while True:
        pair = _best_seam_pair(boxes, tile_ids, sides, alive, min_span_iou)
        if pair is None:
            break
        first, second, axis = pair
        keep, drop = (first, second) if scores[first] >= scores[second] else (second, first)
        boxes[keep] = np.concatenate(
            [np.minimum(boxes[first, :2], boxes[second, :2]),
             np.maximum(boxes[first, 2:], boxes[second, 2:])]
        )  # fmt: skip
        cut = sides[first] | sides[second]
        start, end = (LEFT, RIGHT) if axis == 0 else (TOP, BOTTOM)
        cut[start], cut[end] = sides[first, start], sides[second, end]  # first: left / above
        sides[keep] = cut
        scores[keep] = max(scores[first], scores[second])
        alive[drop] = False
    return boxes, scores, alive


def _best_seam_pair(
    boxes: np.ndarray,
    tile_ids: np.ndarray,
    sides: np.ndarray,
    alive: np.ndarray,
    min_span_iou: float,
) -> tuple[int, int, int] | None:
    """The pair (before the seam, after it, axis 0 for x / 1 for y) that agrees best, if any."""
    best: tuple[float, int, int, int] | None = None
    for axis, (start, end) in enumerate(((LEFT, RIGHT), (TOP, BOTTOM))):
        across = 1 - axis  # the coordinate along the seam
        before = np.flatnonzero(alive & sides[:, end])
        after = np.flatnonzero(alive & sides[:, start])
        for i in before:
            for j in after:
                if tile_ids[i] == tile_ids[j]:
                    continue
                a, b = boxes[i], boxes[j]
                # j begins where or after i begins, before i ends, and ends where or after i
                # ends (equal ends: a box already joined along the other seam).
                if not (a[axis] <= b[axis] < a[axis + 2] <= b[axis + 2]):
                    continue
                overlap = min(a[across + 2], b[across + 2]) - max(a[across], b[across])
                union = max(a[across + 2], b[across + 2]) - min(a[across], b[across])
                span_iou = overlap / union if union > 0 else 0.0
                if span_iou >= min_span_iou and (best is None or span_iou > best[0]):
                    best = (span_iou, int(i), int(j), axis)
    return None if best is None else best[1:]


def merge_boxes(
    boxes: np.ndarray,
    scores: np.ndarray,
    tile_ids: np.ndarray,
    maybe_fragment: np.ndarray,
    *,
    iou_threshold: float,
    containment: float = 0.75,
) -> np.ndarray:
    """Indices of boxes kept after NMS across tiles, best score first.

    A box is dropped when a better box overlaps it by more than ``iou_threshold`` IoU, or when it
    is a fragment candidate (see :func:`fragment_candidates`) and a better box *from another
    tile* covers more than ``containment`` of its area. Other boxes are never dropped for lying
    inside a bigger one, so a small person standing in front of a large box survives.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = order[0]
        keep.append(int(best))
        rest = order[1:]
        inter_w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]))
        inter_h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]))
        inter = inter_w * inter_h
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-12)
        covered = inter / np.maximum(areas[rest], 1e-12)
        fragment = (
            maybe_fragment[rest] & (tile_ids[rest] != tile_ids[best]) & (covered > containment)
        )
        order = rest[~((iou > iou_threshold) | fragment)]
    return np.array(keep, dtype=np.int64)

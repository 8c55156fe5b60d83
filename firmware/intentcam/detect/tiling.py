"""Tiling a frame for a small-input detector, and merging the tiles' boxes back together.

A 300x300 SSD sees a 1280x720 frame at a quarter of its resolution and returns at most 10 boxes,
so small and numerous people are lost. Overlapping tiles give each invoke a smaller area; the
boxes are mapped back to frame coordinates and merged with NMS. A person cut by a tile seam shows
up whole in the overlapping neighbour and as a fragment in the first tile; the fragment is removed
because it lies mostly inside the whole box from another tile.
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


def fragment_candidates(
    tile_boxes: np.ndarray,
    rect: np.ndarray,
    width: int,
    height: int,
    margin: float = 0.02,
    large: float = 0.5,
) -> np.ndarray:
    """Which tile boxes (tile-normalised ``x1, y1, x2, y2``) may be part of a bigger person.

    A box touching an edge of the tile that lies inside the frame may be a person cut by the seam
    (a frame border is no seam). A box at least ``large`` of the tile's height may be a body part
    of a person too big for the tile: tiles are there for small people, the whole-frame pass
    finds the big ones. The whole frame itself yields no candidates.
    """
    x1, y1, x2, y2 = (int(v) for v in rect)
    if x1 == 0 and y1 == 0 and x2 == width and y2 == height:
        return np.zeros(len(tile_boxes), dtype=bool)
    touches = (tile_boxes[:, 3] - tile_boxes[:, 1]) >= large
    if x1 > 0:
        touches |= tile_boxes[:, 0] <= margin
    if y1 > 0:
        touches |= tile_boxes[:, 1] <= margin
    if x2 < width:
        touches |= tile_boxes[:, 2] >= 1 - margin
    if y2 < height:
        touches |= tile_boxes[:, 3] >= 1 - margin
    return touches


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

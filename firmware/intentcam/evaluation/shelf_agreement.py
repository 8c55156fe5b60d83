"""Two labellers' shelf labels of the same clips, compared the way ``eval-shelf`` scores the
detector: the second labeller's events stand in for detections against the first's (same kind
and shelf, starts within :data:`~intentcam.evaluation.shelf.TOLERANCE_S`, each label once).

What it is for: a held-out figure is only as sharp as its labels. Where two careful labellers
following one protocol agree on 7 reaches of 11, a detector's recall measured against one of
them carries that disagreement too.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from intentcam.analytics.shelf import KINDS, Interaction
from intentcam.evaluation.shelf import in_seconds, pair, share
from intentcam.evaluation.shelf_labels import LabelledClip, frame_rate

#: Cells per side of the grid polygons are rasterised on for their overlap (normalised
#: coordinates; the overlap of two polygons does not depend on how the axes are scaled).
GRID_CELLS = 1000


def polygon_iou(first: list[list[float]], second: list[list[float]]) -> float:
    """Intersection over union of two normalised polygons (0 where neither has area)."""
    masks = []
    for points in (first, second):
        mask = np.zeros((GRID_CELLS, GRID_CELLS), np.uint8)
        cv2.fillPoly(mask, [np.round(np.asarray(points) * GRID_CELLS).astype(np.int32)], 1)
        masks.append(mask.astype(bool))
    union = np.count_nonzero(masks[0] | masks[1])
    return float(np.count_nonzero(masks[0] & masks[1]) / union) if union else 0.0


def clip_fps(clip: LabelledClip) -> float:
    """The rate a clip's frame labels are timed at: the labels' own, else its container's."""
    capture = cv2.VideoCapture(str(clip.path))
    try:
        return frame_rate(capture, clip.fps)
    finally:
        capture.release()


def _counts(first: dict[str, list[Interaction]], second: dict[str, list[Interaction]],
            kind: str) -> tuple[list[int], list[float]]:  # fmt: skip
    """[both, second's, first's] events of ``kind`` over every shelf, and the start differences
    (second minus first, seconds) of the matched ones."""
    both, seconds, firsts, shifts = 0, 0, 0, []
    for shelf in sorted(first.keys() | second.keys()):
        found, labels, pairs = pair(second.get(shelf, []), first.get(shelf, []), kind)
        both, seconds, firsts = both + len(pairs), seconds + len(found), firsts + len(labels)
        shifts += [found[i].start - labels[j].start for i, j in pairs]
    return [both, seconds, firsts], shifts


def clip_agreement(first: LabelledClip, second: LabelledClip, fps: float) -> dict[str, Any]:
    """One clip: per kind [both, second's, first's] events, and each shelf's polygon overlap
    (a shelf only one labeller drew overlaps nothing: 0)."""
    firsts, seconds = in_seconds(first, fps), in_seconds(second, fps)
    row: dict[str, Any] = {"clip": first.name, "split": first.split}
    for kind in KINDS:
        row[kind], shifts = _counts(firsts, seconds, kind)
        if kind == "reach":
            row["reach_start_shifts_s"] = [round(s, 3) for s in shifts]
    row["polygon_iou"] = {
        shelf: round(polygon_iou(first.shelves[shelf], second.shelves[shelf]), 3)
        if shelf in first.shelves and shelf in second.shelves else 0.0
        for shelf in sorted(first.shelves.keys() | second.shelves.keys())
    }  # fmt: skip
    return row


def _total(rows: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for kind in KINDS:
        both, seconds, firsts = (sum(row[kind][i] for row in rows) for i in range(3))
        total[kind] = {
            "both": both,
            "second": seconds,
            "first": firsts,
            # the share of each labeller's events the other also has
            "of_first": share(both, firsts),
            "of_second": share(both, seconds),
        }
    shifts: list[float] = [s for row in rows for s in row["reach_start_shifts_s"]]
    largest = max(shifts, key=abs, default=None)
    total["reach_start_shift_s"] = {
        "median": round(statistics.median(shifts), 3) if shifts else None,
        "largest": round(largest, 3) if largest is not None else None,
    }
    ious: list[float] = [iou for row in rows for iou in row["polygon_iou"].values()]
    total["polygon_iou"] = {
        "median": round(statistics.median(ious), 3) if ious else None,
        "lowest": round(min(ious), 3) if ious else None,
    }
    return total


def agreement(
    first: list[LabelledClip],
    second: list[LabelledClip],
    fps_of: Callable[[LabelledClip], float] = clip_fps,
) -> dict[str, Any]:
    """Both labellers on the clips they both labelled (by name; ``split`` is the first's): per
    clip, and totals over the tune clips, the test clips and all; which clips only one
    labelled."""
    seconds = {clip.name: clip for clip in second}
    rows = [clip_agreement(clip, seconds[clip.name], fps_of(clip))
            for clip in first if clip.name in seconds]  # fmt: skip
    names = {clip.name for clip in first}
    return {
        "clips": rows,
        "total": {
            split: _total([row for row in rows if split == "all" or row["split"] == split])
            for split in ("tune", "test", "all")
        },
        "only_first": sorted(names - seconds.keys()),
        "only_second": sorted(seconds.keys() - names),
    }

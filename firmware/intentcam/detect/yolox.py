"""YOLOX (Megvii, 2021): anchor-free grid decode, objectness x class score, letterbox, NCHW input.

The exported head gives, for every cell of the 8, 16 and 32 pixel grids (52x52 + 26x26 + 13x13 =
3549 at 416x416), ``cx, cy, w, h`` as grid offsets and log sizes, the objectness and 80 class
scores (both already sigmoid). A box is ``((x, y) + cell) * stride`` and ``exp(w, h) * stride``; a
person's score is objectness x P(person). NMS is done across tiles by the base class. The network
takes BGR pixels 0..255, letterboxed top-left on grey 114, as it was trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from intentcam.detect.letterbox import Letterbox, Placement
from intentcam.detect.tiled import TiledDetector

FAMILY = "yolox"
STRIDES = (8, 16, 32)
PAD_VALUE = 114


def grid_cells(
    width: int, height: int, strides: tuple[int, ...] = STRIDES
) -> tuple[np.ndarray, np.ndarray]:
    """The (N, 2) cell coordinates and (N,) strides of every output row, in output order."""
    cells, cell_strides = [], []
    for stride in strides:
        ys, xs = np.meshgrid(np.arange(height // stride), np.arange(width // stride), indexing="ij")
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        cell_strides.append(np.full(xs.size, stride))
    return (
        np.concatenate(cells).astype(np.float32),
        np.concatenate(cell_strides).astype(np.float32),
    )


def decode(
    raw: np.ndarray, cells: np.ndarray, strides: np.ndarray, class_id: int, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Canvas-pixel ``x1, y1, x2, y2`` boxes and scores of one class at or above ``threshold``.

    ``raw`` is the (N, 5 + classes) head output; only rows that pass the score are decoded.
    """
    scores = raw[:, 4] * raw[:, 5 + class_id]
    keep = np.flatnonzero(scores >= threshold)
    rows, stride = raw[keep], strides[keep, None]
    centre = (rows[:, 0:2] + cells[keep]) * stride
    half = np.exp(np.minimum(rows[:, 2:4], 10.0)) * stride / 2  # exp() of a wild logit overflows
    boxes = np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)
    return boxes, scores[keep].astype(np.float32)


@dataclass
class YoloxPersonDetector(TiledDetector):
    """People from a YOLOX model; see the module docstring."""

    FAMILY = FAMILY
    #: No box limit and a letterboxed input: tiles alone find 94 % of the people on the
    #: concourse that tiles plus the whole frame find, in two thirds of the time.
    FULL_FRAME = False

    _letterbox: Letterbox = field(init=False)
    _cells: np.ndarray = field(init=False)
    _strides: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        width, height = self.model.input_size
        self._letterbox = Letterbox(width, height, PAD_VALUE, centered=False)
        self._cells, self._strides = grid_cells(width, height)
        rows = self.model.spec.outputs["output"].shape[1]
        if rows != len(self._cells):
            raise ValueError(f"YOLOX output has {rows} rows, the grid {len(self._cells)}")

    def _prepare(self, tile: np.ndarray) -> tuple[np.ndarray, Placement]:
        return self._letterbox.fit(tile)

    def _decode(self, context: Placement, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        raw = self.model.output("output")[0]
        boxes, scores = decode(raw, self._cells, self._strides, self._class_id, threshold)
        return context.to_normalised(boxes), scores

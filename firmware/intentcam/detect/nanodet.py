"""NanoDet (RangiLyu, 2020): a GFL head decoded as distributions over distances, letterboxed input.

Per stride (8, 16, 32) the model gives sigmoid class scores ``(N, 80)`` and, for each of the four
sides of a box, a distribution over ``reg_max + 1`` distance bins ``(N, 4 * (reg_max + 1))``: the
distance is the expectation of the softmax, times the stride, measured from the cell's centre
``cell * stride + (stride - 1) / 2``. The network takes BGR normalised by per-channel mean and std
(the manifest's ``mean``/``std``), letterboxed centred on black.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from intentcam.detect.letterbox import Letterbox, Placement
from intentcam.detect.tiled import TiledDetector

FAMILY = "nanodet"
STRIDES = (8, 16, 32)
#: Distance bins per side are 0..REG_MAX (GFL's discrete distribution).
REG_MAX = 7


def cell_centres(width: int, height: int, stride: int) -> np.ndarray:
    """(N, 2) centres of the cells of one stride, row-major like the head's output."""
    ys, xs = np.meshgrid(np.arange(height // stride), np.arange(width // stride), indexing="ij")
    offset = (stride - 1) / 2
    return np.stack([xs.ravel() * stride + offset, ys.ravel() * stride + offset], axis=1).astype(
        np.float32
    )


def distances(distribution: np.ndarray, stride: int) -> np.ndarray:
    """(N, 4) left, top, right, bottom distances from (N, 4 * (REG_MAX + 1)) bin logits."""
    logits = distribution.reshape(-1, 4, REG_MAX + 1)
    logits = logits - logits.max(axis=2, keepdims=True)  # a stable softmax
    weights = np.exp(logits)
    weights /= weights.sum(axis=2, keepdims=True)
    return (weights @ np.arange(REG_MAX + 1, dtype=np.float32)) * stride


@dataclass
class NanodetPersonDetector(TiledDetector):
    """People from a NanoDet (GFL) model; see the module docstring."""

    FAMILY = FAMILY
    #: Like YOLOX: no box limit, letterboxed input; tiles alone suffice.
    FULL_FRAME = False

    _letterbox: Letterbox = field(init=False)
    _centres: list[np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        width, height = self.model.input_size
        self._letterbox = Letterbox(width, height, 0, centered=True)
        self._centres = [cell_centres(width, height, stride) for stride in STRIDES]

    def _prepare(self, tile: np.ndarray) -> tuple[np.ndarray, Placement]:
        return self._letterbox.fit(tile)

    def _decode(self, context: Placement, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        all_boxes, all_scores = [], []
        for stride, centres in zip(STRIDES, self._centres):
            scores = self.model.output(f"cls_{stride}")[0][:, self._class_id]
            keep = np.flatnonzero(scores >= threshold)
            sides = distances(self.model.output(f"dis_{stride}")[0][keep], stride)
            centre = centres[keep]
            all_boxes.append(np.concatenate([centre - sides[:, :2], centre + sides[:, 2:]], axis=1))
            all_scores.append(scores[keep])
        boxes = np.concatenate(all_boxes).astype(np.float32)
        return context.to_normalised(boxes), np.concatenate(all_scores).astype(np.float32)

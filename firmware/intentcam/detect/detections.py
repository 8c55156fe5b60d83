"""Per-frame detections as arrays: the currency between detector and tracker."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    """``boxes`` (N, 4) float32 normalised ``x1, y1, x2, y2``; ``scores`` (N,) float32."""

    boxes: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), dtype=np.float32), np.zeros(0, dtype=np.float32))

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def to_pixels(self, width: int, height: int) -> np.ndarray:
        """Boxes in pixel coordinates of a ``width`` x ``height`` frame."""
        return self.boxes * np.array([width, height, width, height], dtype=np.float32)

"""Letterboxing: resize keeping the aspect ratio into the network's square input, and map back.

Grid detectors (YOLOX, NanoDet) were trained on letterboxed images, so a stretched image would
distort people. Where the image sits and what fills the rest is part of how each was trained:
YOLOX puts it top-left on grey 114, NanoDet centres it on black.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass(frozen=True)
class Placement:
    """Where the resized image sits in the canvas: ``scale``, and its ``left``/``top`` offsets."""

    scale: float
    left: int
    top: int
    width: int
    height: int

    def to_normalised(self, boxes: np.ndarray) -> np.ndarray:
        """Canvas-pixel ``x1, y1, x2, y2`` boxes (N, 4) to the source image's 0..1 coordinates."""
        offset = np.array([self.left, self.top, self.left, self.top], dtype=np.float32)
        size = np.array([self.width, self.height, self.width, self.height], dtype=np.float32)
        return np.clip((boxes - offset) / (self.scale * size), 0.0, 1.0).astype(np.float32)


@dataclass
class Letterbox:
    """A reusable canvas of ``width`` x ``height``; see the module docstring."""

    width: int
    height: int
    pad_value: int
    centered: bool
    _canvas: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self._canvas = np.empty((self.height, self.width, 3), dtype=np.uint8)

    def fit(self, image: np.ndarray) -> tuple[np.ndarray, Placement]:
        """The letterboxed image (a reused buffer) and where ``image`` was placed in it."""
        height, width = image.shape[:2]
        scale = min(self.width / width, self.height / height)
        new_w = max(1, min(self.width, int(round(width * scale))))
        new_h = max(1, min(self.height, int(round(height * scale))))
        left = (self.width - new_w) // 2 if self.centered else 0
        top = (self.height - new_h) // 2 if self.centered else 0
        self._canvas[:] = self.pad_value
        cv2.resize(
            image,
            (new_w, new_h),
            dst=self._canvas[top : top + new_h, left : left + new_w],
            interpolation=cv2.INTER_LINEAR,
        )
        return self._canvas, Placement(scale, left, top, width, height)

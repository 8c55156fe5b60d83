"""Person detection with an SSD model that ends in ``TFLite_Detection_PostProcess``.

The model does its own NMS and returns at most N boxes (10 for SSD MobileNet v1, 20 for v2) as
``ymin, xmin, ymax, xmax`` normalised to its input. We keep the person class and the score
threshold and hand the boxes (``x1, y1, x2, y2``) to the tiled base, which maps them to the frame.
The image is stretched to the 300x300 input, as the SSDs were trained. v2 has an Edge TPU build.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from intentcam.detect.tiled import TiledDetector

FAMILY = "ssd_postprocess"


@dataclass
class SsdPersonDetector(TiledDetector):
    """Finds people in BGR frames; see the module docstring."""

    FAMILY = FAMILY

    _resized: np.ndarray = field(init=False)
    _rgb: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        width, height = self.model.input_size
        self._resized = np.empty((height, width, 3), dtype=np.uint8)
        self._rgb = np.empty((height, width, 3), dtype=np.uint8)

    def _prepare(self, tile: np.ndarray) -> tuple[np.ndarray, None]:
        width, height = self.model.input_size
        cv2.resize(tile, (width, height), dst=self._resized, interpolation=cv2.INTER_LINEAR)
        if self.model.spec.input.color == "rgb":
            cv2.cvtColor(self._resized, cv2.COLOR_BGR2RGB, dst=self._rgb)
            return self._rgb, None
        return self._resized, None

    def _decode(self, context: None, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        boxes = self.model.output("boxes")[0]
        classes = self.model.output("classes")[0]
        scores = self.model.output("scores")[0]
        count = int(self.model.output("count")[0])
        boxes, classes, scores = boxes[:count], classes[:count], scores[:count]
        keep = (np.rint(classes).astype(np.int64) == self._class_id) & (scores >= threshold)
        xyxy = np.clip(boxes[keep][:, [1, 0, 3, 2]], 0.0, 1.0).astype(np.float32)
        return xyxy, scores[keep].astype(np.float32)

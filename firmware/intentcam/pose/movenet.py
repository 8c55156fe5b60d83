"""MoveNet SinglePose Lightning on a person crop: 17 COCO keypoints in image coordinates.

The crop is the top ``top_share`` of the tracked box (the upper body: the arms and hands get more of
MoveNet's 192 pixels, and the legs do not reach for anything) grown upwards by ``above`` of the
box's height for a person at a shelf that rises above their head (a detector's box often ends at
the head, cutting off a hand raised to a high shelf), made square and padded by
:data:`PAD` (MoveNet was trained on people centred in a square with some margin); it lives in
memory for one invoke and is never kept.
Keypoints come back as ``(x, y, score)`` in normalised image coordinates of the whole frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from intentcam.inference.base import Model

#: COCO keypoint order of MoveNet's output.
KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
#: Margin around the person box, as a share of its longer side, on each side.
PAD = 0.15


@dataclass
class PoseModel:
    """The pose estimator; see the module docstring."""

    model: Model
    #: The share of the box, from its top, that MoveNet sees (1.0: the whole person).
    top_share: float = 1.0
    #: How far above the box's top a crop that reaches up begins, as a share of the box's height.
    above: float = 0.0

    def __post_init__(self) -> None:
        self._size = self.model.input_size

    def keypoints(self, image: np.ndarray, box: np.ndarray, reach_up: bool = False) -> np.ndarray:
        """(17, 3) of ``x, y, score`` (x, y normalised to the frame) for the person in ``box``
        (normalised ``x1, y1, x2, y2``) of the BGR ``image``; ``reach_up`` grows the crop by
        :attr:`above` over the box."""
        height, width = image.shape[:2]
        x1, y1, x2, y2 = (float(v) for v in box)
        above = self.above if reach_up else 0.0
        y1, y2 = y1 - above * (y2 - y1), y1 + self.top_share * (y2 - y1)
        cx, cy = (x1 + x2) / 2 * width, (y1 + y2) / 2 * height
        side = max((x2 - x1) * width, (y2 - y1) * height) * (1 + 2 * PAD)
        left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
        size = max(int(round(side)), 2)
        crop = np.zeros((size, size, 3), dtype=np.uint8)  # black where the square leaves the frame
        sx1, sy1 = max(left, 0), max(top, 0)
        sx2, sy2 = min(left + size, width), min(top + size, height)
        if sx2 > sx1 and sy2 > sy1:
            crop[sy1 - top : sy2 - top, sx1 - left : sx2 - left] = image[sy1:sy2, sx1:sx2]
        pixels = cv2.cvtColor(cv2.resize(crop, self._size, interpolation=cv2.INTER_AREA),
                              cv2.COLOR_BGR2RGB)  # fmt: skip
        self.model.invoke(pixels)
        raw = self.model.output("keypoints").reshape(17, 3).astype(np.float64)  # y, x, score
        points = np.empty((17, 3), dtype=np.float64)
        points[:, 0] = (left + raw[:, 1] * size) / width
        points[:, 1] = (top + raw[:, 0] * size) / height
        points[:, 2] = raw[:, 2]
        return points

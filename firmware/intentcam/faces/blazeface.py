"""MediaPipe BlazeFace: anchors, box and keypoint decoding, weighted NMS, written for the daemon.

Both models regress, per anchor, a box (centre offset and size) and six keypoints (right eye,
left eye, nose tip, mouth, right ear, left ear) in input pixels relative to the anchor centre,
and a logit. Anchors follow MediaPipe's SSD anchor scheme with ``fixed_anchor_size``:

- short range (128x128): strides 8, 16, 16, 16 -> 16x16x2 + 8x8x6 = 896 anchors;
- full range (192x192): stride 4 -> 48x48x1 = 2,304 anchors.

The face crop (letterboxed to a square) lives only inside :meth:`BlazeFace.detect`; what leaves it
is boxes, scores and keypoints in the caller's pixel coordinates, used by the quality gate and
then dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from intentcam.inference.base import Model

KEYPOINTS = ("right_eye", "left_eye", "nose", "mouth", "right_ear", "left_ear")
ANCHOR_STRIDES = {128: (8, 16, 16, 16), 192: (4,)}


def ssd_anchors(size: int) -> np.ndarray:
    """Anchor centres (N, 2), normalised, in MediaPipe's order (layer by layer, row-major)."""
    strides = ANCHOR_STRIDES[size]
    centres = []
    layer = 0
    while layer < len(strides):
        # Consecutive layers with the same stride share a grid: their anchors are interleaved.
        same = 1
        while layer + same < len(strides) and strides[layer + same] == strides[layer]:
            same += 1
        per_cell = 2 * same if size == 128 else 1
        grid = int(np.ceil(size / strides[layer]))
        ys, xs = np.meshgrid(
            (np.arange(grid) + 0.5) / grid, (np.arange(grid) + 0.5) / grid, indexing="ij"
        )
        cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cells, per_cell, axis=0))
        layer += same
    return np.concatenate(centres).astype(np.float32)


@dataclass(frozen=True)
class Faces:
    """``boxes`` (N, 4) pixel ``x1, y1, x2, y2``; ``scores`` (N,); ``keypoints`` (N, 6, 2) pixels."""

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray, iou_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's weighted NMS: overlapping detections are averaged, weighted by score."""
    order = np.argsort(-scores)
    kept_boxes, kept_scores, kept_points = [], [], []
    remaining = order
    while remaining.size:
        best = remaining[0]
        b = boxes[remaining]
        x1 = np.maximum(b[:, 0], boxes[best, 0])
        y1 = np.maximum(b[:, 1], boxes[best, 1])
        x2 = np.minimum(b[:, 2], boxes[best, 2])
        y2 = np.minimum(b[:, 3], boxes[best, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        best_area = area[0]
        iou = inter / np.maximum(area + best_area - inter, 1e-12)
        group = remaining[iou > iou_threshold]
        weights = scores[group][:, None]
        kept_boxes.append((boxes[group] * weights).sum(0) / weights.sum())
        kept_points.append((keypoints[group] * weights[:, :, None]).sum(0) / weights.sum())
        kept_scores.append(scores[best])
        remaining = remaining[iou <= iou_threshold]
    if not kept_boxes:
        return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 6, 2))
    return np.array(kept_boxes), np.array(kept_scores), np.array(kept_points)


@dataclass
class BlazeFace:
    """A BlazeFace model with its anchors; :meth:`detect` finds faces in a BGR image region."""

    model: Model
    min_score: float = 0.5
    nms_iou: float = 0.3

    def __post_init__(self) -> None:
        width, height = self.model.input_size
        self.size = width
        self.anchors = ssd_anchors(width)
        self._rgb = np.empty((height, width, 3), dtype=np.uint8)

    def detect(self, image: np.ndarray) -> Faces:
        """Faces in a BGR image (a whole frame or a head region), in its pixel coordinates."""
        height, width = image.shape[:2]
        side = max(height, width)
        # Letterbox to a square so faces keep their shape; the padding is outside the image.
        pad_x, pad_y = (side - width) / 2, (side - height) / 2
        square = cv2.copyMakeBorder(
            image,
            int(pad_y),
            int(np.ceil(pad_y)),
            int(pad_x),
            int(np.ceil(pad_x)),
            cv2.BORDER_CONSTANT,
            value=(0, 0, 0),
        )
        resized = cv2.resize(square, (self.size, self.size), interpolation=cv2.INTER_AREA)
        cv2.cvtColor(resized, cv2.COLOR_BGR2RGB, dst=self._rgb)
        self.model.invoke(self._rgb)
        raw = self.model.output("regressors")[0]
        logits = self.model.output("classificators")[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -80, 80)))
        keep = scores >= self.min_score
        if not keep.any():
            return Faces(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 6, 2)))
        raw, scores, anchors = raw[keep], scores[keep], self.anchors[keep]
        centre = raw[:, 0:2] / self.size + anchors
        half = raw[:, 2:4] / self.size / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        points = raw[:, 4:16].reshape(-1, 6, 2) / self.size + anchors[:, None, :]
        boxes, scores, points = weighted_nms(boxes, scores, points, self.nms_iou)
        # Normalised square coordinates -> the caller's pixels.
        offset = np.array([pad_x, pad_y])
        boxes = boxes * side - np.tile(offset, 2)
        points = points * side - offset
        return Faces(boxes, scores, points)

"""Facial expression with the FER mini-Xception: 7 probabilities in the model's order.

Preprocessing as the model was trained (SOURCES.md): grey, 64x64, ``x = gray / 255``,
``x = (x - 0.5) * 2``; the manifest's input range [-1, 1] makes the runtime do exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from intentcam.inference.base import Model

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@dataclass
class ExpressionModel:
    model: Model

    def __post_init__(self) -> None:
        width, height = self.model.input_size
        self._size = (width, height)

    def probabilities(self, gray_face: np.ndarray) -> np.ndarray:
        """Seven probabilities (float32, sum 1) for a grey face crop of any size."""
        resized = cv2.resize(gray_face, self._size, interpolation=cv2.INTER_AREA)
        self.model.invoke(resized[:, :, None])
        probabilities = self.model.output("probabilities")[0].astype(np.float32)
        total = float(probabilities.sum())
        return probabilities / total if total > 0 else probabilities

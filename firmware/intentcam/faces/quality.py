"""The quality gate: only big, confident, frontal and sharp faces reach expression inference.

Faces that fail are counted, not analysed: a tiny, blurred or turned-away face gives the
expression model noise, and noise would show up as sentiment.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from intentcam.config import FacesConfig


@dataclass(frozen=True)
class QualitySettings:
    """What a face must be to be analysed; the configured values come from ``[faces]``."""

    min_size_px: float
    min_score: float
    #: The nose must sit between the eyes: its position along the eye line, 0 = right eye,
    #: 1 = left eye, must lie within [frontal_min, 1 - frontal_min].
    frontal_min: float = 0.25
    #: Variance of the Laplacian of the grey face, below which it is too blurred.
    min_sharpness: float = 15.0

    @classmethod
    def from_config(cls, config: FacesConfig | None = None) -> QualitySettings:
        """The gate of ``[faces]`` (its defaults when ``config`` is ``None``)."""
        config = config or FacesConfig()
        return cls(
            min_size_px=config.min_face_px,
            min_score=config.min_face_score,
            min_sharpness=config.min_sharpness,
        )


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    #: 0..1 weight of this sample in the session's average (score x frontality x size).
    weight: float


def frontality(keypoints: np.ndarray) -> float:
    """Where the nose lies between the eyes along the eye line (0.5 = frontal)."""
    right_eye, left_eye, nose = keypoints[0], keypoints[1], keypoints[2]
    axis = left_eye - right_eye
    length_sq = float(axis @ axis)
    if length_sq < 1e-6:
        return 0.0
    return float((nose - right_eye) @ axis / length_sq)


def sharpness(gray_face: np.ndarray) -> float:
    return float(cv2.Laplacian(gray_face, cv2.CV_64F).var())


def judge(
    box: np.ndarray,
    score: float,
    keypoints: np.ndarray,
    gray_face: np.ndarray,
    settings: QualitySettings,
) -> Verdict:
    """Pass or fail one face, with the first reason it failed."""
    size = float(min(box[2] - box[0], box[3] - box[1]))
    if size < settings.min_size_px:
        return Verdict(False, f"too small ({size:.0f} px < {settings.min_size_px:.0f})", 0.0)
    if score < settings.min_score:
        return Verdict(False, f"low score ({score:.2f})", 0.0)
    position = frontality(keypoints)
    if not settings.frontal_min <= position <= 1 - settings.frontal_min:
        return Verdict(False, "not frontal", 0.0)
    blur = sharpness(gray_face)
    if blur < settings.min_sharpness:
        return Verdict(False, f"blurred (sharpness {blur:.0f})", 0.0)
    frontal = 1.0 - abs(position - 0.5) * 2
    weight = score * frontal * min(1.0, size / (2 * settings.min_size_px))
    return Verdict(True, "ok", float(np.clip(weight, 0.05, 1.0)))

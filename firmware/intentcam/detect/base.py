"""The one small interface every person detector implements, whatever its family or runtime.

The frame loop, ``intentcam eval``, ``intentcam check`` and the benchmark type against
:class:`PersonDetector` only; which class stands behind it is decided by the model manifest entry
(its ``family``) in :func:`intentcam.detect.build_detector`. New families (YOLOX, NanoDet) plug in
there without touching the loop, and an OTA update can swap one for another between two frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from intentcam.detect.detections import Detections
from intentcam.models.manifest import OperatingPoint


@dataclass
class DetectStats:
    """Milliseconds spent in the last :meth:`PersonDetector.detect` call, and how it ran."""

    preprocess_ms: float = 0.0
    invoke_ms: float = 0.0
    postprocess_ms: float = 0.0
    #: Model invocations (tiles plus the whole-frame pass).
    invokes: int = 0
    #: Tiling layout used (``1x1``, ``2x1``, ``2x2``).
    layout: str = "1x1"

    @property
    def total_ms(self) -> float:
        """The whole detect call: preprocessing, invocations, post-processing."""
        return self.preprocess_ms + self.invoke_ms + self.postprocess_ms


@runtime_checkable
class PersonDetector(Protocol):
    """Finds people in BGR frames; boxes normalised ``x1, y1, x2, y2``, best score first."""

    @property
    def score_threshold(self) -> float:
        """The configured score at or above which a box counts as a person."""
        ...

    @property
    def last(self) -> DetectStats:
        """Timings and invocations of the last :meth:`detect` call."""
        ...

    def detect(
        self, image: np.ndarray, min_score: float | None = None, near: bool = False
    ) -> Detections:
        """People in one BGR frame (uint8, HxWx3).

        ``min_score`` overrides the configured threshold (the tracker asks for low-score boxes).
        ``near``: the people that matter stand near the camera, large in the picture (a view
        with shelf zones); an ``auto`` tiling then runs the whole frame only.
        """
        ...

    @property
    def operating_point(self) -> OperatingPoint:
        """The model's calibrated thresholds (the tracker's come from here unless configured)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Model id, version, family, runtime, delegate, threads and why (logs, health, status)."""
        ...

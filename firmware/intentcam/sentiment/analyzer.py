"""Expression sampling on the head regions of tracked people, on a cadence and a time budget.

For each confirmed track whose last sample is older than ``cadence_s`` (oldest first), the upper
part of its box (``head_fraction``, padded) is cropped, BlazeFace finds the face, the quality gate
judges it, and the FER model's probabilities are added to the session's average. Work stops for
this frame once ``budget_ms`` is spent, so a crowd never stalls the loop; the tracks not reached
are first in line next frame. Tracks in ``staff`` zones or in ``privacy.exclude_zones`` are never
analysed.

Privacy: the head crop, the face crop and the keypoints are local variables of
:meth:`FaceAnalyzer.analyse`; only the seven probabilities and a quality weight leave it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from intentcam.config import FacesConfig
from intentcam.faces.blazeface import BlazeFace
from intentcam.faces.expression import ExpressionModel
from intentcam.faces.quality import QualitySettings, judge

#: Receives (token, probabilities, quality weight) for each accepted face.
Sample = Callable[[str, np.ndarray, float], None]


@dataclass(frozen=True)
class AnalyzerSettings:
    """Cadence, budget and where faces are looked for; configured in ``[faces]``."""

    cadence_s: float
    budget_ms: float
    #: A close-range camera: look for faces in the whole frame instead of head regions.
    whole_frame: bool
    #: The upper part of a person box searched for the face, and the padding around it.
    head_fraction: float = 0.35
    pad: float = 0.15

    @classmethod
    def from_config(cls, config: FacesConfig | None = None) -> AnalyzerSettings:
        """The sampling of ``[faces]`` (its defaults when ``config`` is ``None``)."""
        config = config or FacesConfig()
        return cls(
            cadence_s=config.cadence_s, budget_ms=config.budget_ms, whole_frame=config.whole_frame
        )


@dataclass
class FaceAnalyzer:
    detector: BlazeFace
    expression: ExpressionModel
    quality: QualitySettings = field(default_factory=QualitySettings.from_config)
    settings: AnalyzerSettings = field(default_factory=AnalyzerSettings.from_config)
    counts: Counter = field(default_factory=Counter)
    _last: dict[str, float] = field(default_factory=dict)

    def analyse(
        self,
        image: np.ndarray,
        tokens: list[str],
        boxes: np.ndarray,
        now: float,
        excluded: set[str],
        sample: Sample,
    ) -> int:
        """Sample expressions for due tracks in this frame; returns how many faces were analysed."""
        started = time.perf_counter()
        height, width = image.shape[:2]
        due = [
            (self._last.get(token, float("-inf")), index)
            for index, token in enumerate(tokens)
            if token not in excluded
            and now - self._last.get(token, float("-inf")) >= self.settings.cadence_s
        ]
        self.counts["excluded"] += sum(1 for token in tokens if token in excluded)
        analysed = 0
        for _, index in sorted(due):
            if (time.perf_counter() - started) * 1e3 >= self.settings.budget_ms:
                self.counts["over_budget"] += 1
                continue
            token = tokens[index]
            self._last[token] = now
            region = self._head_region(boxes[index], width, height)
            if region is None:
                self.counts["no_region"] += 1
                continue
            x1, y1, x2, y2 = region
            head = image[y1:y2, x1:x2]
            faces = self.detector.detect(head)
            if len(faces) == 0:
                self.counts["no_face"] += 1
                continue
            best = int(np.argmax(faces.scores))
            box = faces.boxes[best]
            fx1, fy1 = int(max(box[0], 0)), int(max(box[1], 0))
            fx2, fy2 = int(min(box[2], head.shape[1])), int(min(box[3], head.shape[0]))
            if fx2 - fx1 < 2 or fy2 - fy1 < 2:
                self.counts["no_face"] += 1
                continue
            gray = cv2.cvtColor(head[fy1:fy2, fx1:fx2], cv2.COLOR_BGR2GRAY)
            verdict = judge(
                box, float(faces.scores[best]), faces.keypoints[best], gray, self.quality
            )
            if not verdict.ok:
                self.counts["rejected"] += 1
                continue
            sample(token, self.expression.probabilities(gray), verdict.weight)
            self.counts["analysed"] += 1
            analysed += 1
        return analysed

    def _head_region(
        self, box: np.ndarray, width: int, height: int
    ) -> tuple[int, int, int, int] | None:
        if self.settings.whole_frame:
            return 0, 0, width, height
        x1, y1, x2, y2 = box * np.array([width, height, width, height])
        box_w, box_h = x2 - x1, y2 - y1
        head_h = box_h * self.settings.head_fraction
        pad = self.settings.pad * max(box_w, head_h)
        region = (
            int(max(x1 - pad, 0)),
            int(max(y1 - pad, 0)),
            int(min(x2 + pad, width)),
            int(min(y1 + head_h + pad, height)),
        )
        if region[2] - region[0] < 8 or region[3] - region[1] < 8:
            return None
        return region

    def forget(self, tokens: list[str]) -> None:
        """Sessions that ended: drop their cadence state (memory stays bounded)."""
        for token in tokens:
            self._last.pop(token, None)

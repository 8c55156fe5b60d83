"""The frame loop of every detector family: tiles in, one merged set of people out.

A family decodes one tile (:meth:`TiledDetector._prepare` fills the model input,
:meth:`TiledDetector._decode` turns the outputs into tile-normalised boxes); this base runs the
tiles of the configured layout (:mod:`intentcam.detect.tiling`), maps boxes back to the frame,
drops boxes below the size limit, merges everything with NMS that also removes seam fragments,
and joins the pieces of people no tile holds whole.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from intentcam.config import DetectorConfig
from intentcam.detect.base import DetectStats
from intentcam.detect.detections import Detections
from intentcam.detect.tiling import (
    choose_layout,
    fragment_candidates,
    join_seam_halves,
    merge_boxes,
    seam_sides,
    tile_rects,
)
from intentcam.errors import ModelError
from intentcam.inference.base import Model
from intentcam.models.manifest import OperatingPoint


@dataclass(frozen=True)
class DetectorSettings:
    """Thresholds and tiling. The defaults live in one place: ``[detector]`` of the config."""

    score_threshold: float
    min_box_size: float
    tiling: str
    tile_overlap: float
    nms_iou: float
    #: Add a whole-frame pass to multi-tile layouts (see tiling.tile_rects); ``None``: the
    #: detector family's default (:attr:`TiledDetector.FULL_FRAME`).
    tile_full_frame: bool | None

    @classmethod
    def from_config(cls, config: DetectorConfig, point: OperatingPoint) -> DetectorSettings:
        """The settings of ``[detector]``; an unset score threshold is the model's ``point``."""
        return cls(
            score_threshold=config.score_threshold
            if config.score_threshold is not None
            else point.score_threshold,
            min_box_size=config.min_box_size,
            tiling=config.tiling,
            tile_overlap=config.tile_overlap,
            nms_iou=config.nms_iou,
            tile_full_frame=config.tile_full_frame,
        )


@dataclass
class TiledDetector:
    """Base of the detector families; see the module docstring. A :class:`PersonDetector`."""

    #: The manifest ``family`` a subclass decodes.
    FAMILY: ClassVar[str] = ""
    #: Whether multi-tile layouts also run the whole frame, unless the config says.
    FULL_FRAME: ClassVar[bool] = True

    model: Model
    labels: list[str]
    settings: DetectorSettings
    target_label: str = "person"
    #: Why this model runs (``detector.model``, or what ``auto`` found): logs, status, health.
    selection: str = ""
    last: DetectStats = field(default_factory=DetectStats)
    _class_id: int = field(init=False)
    _layouts: dict[tuple[int, int, bool], tuple[str, np.ndarray]] = field(
        init=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        try:
            self._class_id = self.labels.index(self.target_label)
        except ValueError:
            raise ModelError(
                f"model {self.model.spec.id!r}: no {self.target_label!r} label in its labels file"
            ) from None

    @property
    def score_threshold(self) -> float:
        return self.settings.score_threshold

    @property
    def operating_point(self) -> OperatingPoint:
        point = self.model.spec.operating_point
        if point is None:  # the manifest validator makes every detector carry one
            raise ModelError(f"model {self.model.spec.id!r} has no operating_point")
        return point

    def describe(self) -> dict[str, Any]:
        described = {**self.model.describe(), "family": self.FAMILY}
        if self.selection:
            described["selected"] = self.selection
        return described

    def layout_for(self, width: int, height: int, near: bool = False) -> tuple[str, np.ndarray]:
        """The tiling layout name and tile rectangles for a frame size (cached per size).

        ``near`` (people near the camera matter, as at shelves): ``auto`` is 1x1. Tiles exist to
        find people too small for the whole frame; a shopper at a shelf fills a good part of it,
        and every tile seam across them makes pieces whose joined box shifts from frame to frame,
        taking the pose crop with it (hw_bench/shelf_invariance.py: the shelf clips at 1280x960,
        16:9 and 1080p found 30 of 48 reaches untiled against 24 of 48 tiled, as precisely).
        """
        key = (width, height, near)
        if key not in self._layouts:
            layout = self.settings.tiling
            if layout == "auto" and near:
                layout = "1x1"
            elif layout == "auto":
                size = min(self.model.input_size)
                layout = choose_layout(width, height, size, self.settings.tile_overlap)
            full_frame = self.settings.tile_full_frame
            if full_frame is None:
                full_frame = self.FULL_FRAME
            rects = tile_rects(width, height, layout, self.settings.tile_overlap, full_frame)
            self._layouts[key] = (layout, rects)
        return self._layouts[key]

    def detect(
        self, image: np.ndarray, min_score: float | None = None, near: bool = False
    ) -> Detections:
        """People in one BGR frame (uint8, HxWx3), best score first.

        ``min_score`` overrides the configured threshold (the tracker asks for low-score boxes);
        ``near``: see :meth:`layout_for`.
        """
        threshold = self.settings.score_threshold if min_score is None else min_score
        height, width = image.shape[:2]
        layout, rects = self.layout_for(width, height, near)
        times = DetectStats(layout=layout)
        parts_boxes, parts_scores, parts_tiles, parts_fragment, parts_sides = [], [], [], [], []
        frame_size = np.array([width, height, width, height], dtype=np.float32)
        for tile_id, rect in enumerate(rects):
            x1, y1, x2, y2 = (int(v) for v in rect)
            start = time.perf_counter()
            pixels, context = self._prepare(image[y1:y2, x1:x2])
            mid = time.perf_counter()
            self.model.invoke(pixels)
            end = time.perf_counter()
            boxes, scores = self._decode(context, threshold)  # tile-normalised xyxy
            scale = np.array([x2 - x1, y2 - y1, x2 - x1, y2 - y1], dtype=np.float32)
            offset = np.array([x1, y1, x1, y1], dtype=np.float32)
            parts_boxes.append((offset + boxes * scale) / frame_size)
            sides = seam_sides(boxes, rect, width, height)
            parts_sides.append(sides)
            parts_fragment.append(fragment_candidates(boxes, rect, width, height, sides=sides))
            parts_scores.append(scores)
            parts_tiles.append(np.full(len(scores), tile_id, dtype=np.int32))
            times.preprocess_ms += (mid - start) * 1e3
            times.invoke_ms += (end - mid) * 1e3
            times.invokes += 1
        start = time.perf_counter()
        detections = self._merge(
            np.concatenate(parts_boxes),
            np.concatenate(parts_scores),
            np.concatenate(parts_tiles),
            np.concatenate(parts_fragment),
            np.concatenate(parts_sides),
            height / width,
        )
        times.postprocess_ms = (time.perf_counter() - start) * 1e3
        self.last = times
        return detections

    def _prepare(self, tile: np.ndarray) -> tuple[np.ndarray, Any]:
        """The model input for one BGR tile, and whatever :meth:`_decode` needs to map back."""
        raise NotImplementedError

    def _decode(self, context: Any, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """People in the last invoke: tile-normalised ``x1, y1, x2, y2`` boxes and scores."""
        raise NotImplementedError

    def _merge(
        self,
        boxes: np.ndarray,
        scores: np.ndarray,
        tiles: np.ndarray,
        maybe_fragment: np.ndarray,
        sides: np.ndarray,
        aspect: float,
    ) -> Detections:
        # Minimum size is relative to the frame height, in both directions.
        widths = (boxes[:, 2] - boxes[:, 0]) / aspect
        heights = boxes[:, 3] - boxes[:, 1]
        big = np.minimum(widths, heights) >= self.settings.min_box_size
        boxes, scores, tiles = boxes[big], scores[big], tiles[big]
        maybe_fragment, sides = maybe_fragment[big], sides[big]
        keep = merge_boxes(
            boxes, scores, tiles, maybe_fragment, iou_threshold=self.settings.nms_iou
        )
        # After NMS, so each tile offers one box per piece: a person whom no tile holds whole
        # (and no whole-frame pass found) is left as pieces cut by the seams; join them.
        boxes, scores, remain = join_seam_halves(
            boxes[keep], scores[keep], tiles[keep], sides[keep]
        )
        return Detections(boxes[remain], scores[remain])

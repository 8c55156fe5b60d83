"""Proving a model before it is trusted: load it as configured, run the reference frames.

The bundle carries a few reference frames and what the model found on them when it was built
(people and their boxes at its operating point) plus a latency budget. On the device the model is
loaded with the configured delegate (so an Edge TPU build is tested on the Edge TPU), each frame is
detected, and the result must match: about the same number of people, most reference boxes found
again (IoU >= 0.5), nobody-found where people were expected is a failure, and the median time of
one detection pass within the budget. Scores differ a little between delegates and runtimes,
hence tolerances rather than equality.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from intentcam.config import Settings
from intentcam.detect import PersonDetector, detector_from_spec
from intentcam.errors import UserError
from intentcam.inference.runtime import Runtime
from intentcam.models.store import labels_at
from intentcam.ota.bundle import BundleError, BundleManifest, FrameSummary
from intentcam.track.bytetrack import iou_matrix

#: A frame may find this many people more or fewer than the reference, or this fraction.
COUNT_SLACK = 1
COUNT_SLACK_FRACTION = 0.25
#: Share of reference boxes that must be found again at IoU >= 0.5.
MIN_BOX_RECALL = 0.7
#: How often each frame is detected for the latency median (the first pass warms up).
PASSES = 3


@dataclass
class SelfTestReport:
    ok: bool
    reason: str
    latency_ms: float
    found: list[FrameSummary] = field(default_factory=list)


def load_detector(
    manifest: BundleManifest,
    folder: Path,
    settings: Settings,
    reason: str,
    runtime: Runtime | None = None,
) -> PersonDetector:
    """The detector of a bundle whose files are in ``folder``; hashes re-checked on load."""
    spec = manifest.model_spec()
    labels: list[str] = []
    if spec.labels is not None:
        labels = labels_at(folder / spec.labels.file, spec.labels.sha256, spec.id)
    return detector_from_spec(spec, folder, labels, settings, reason, runtime=runtime)


def summarize(detector: PersonDetector, image: np.ndarray, frame: str) -> FrameSummary:
    """What ``detector`` finds on one frame at its operating point."""
    found = detector.detect(image)
    boxes = [tuple(round(float(v), 4) for v in box) for box in found.boxes]
    return FrameSummary(frame=frame, people=len(found), boxes=boxes)  # type: ignore[arg-type]


def read_frame(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"{path}: not a readable image")
    return image


def measure(
    detector: PersonDetector, frames: list[tuple[str, np.ndarray]]
) -> tuple[list[FrameSummary], float]:
    """Summaries of ``frames`` and the median ms of one detection pass (after a warm-up)."""
    summaries, times = [], []
    for name, image in frames:
        summaries.append(summarize(detector, image, name))
        for _ in range(PASSES - 1):
            started = time.perf_counter()
            detector.detect(image)
            times.append((time.perf_counter() - started) * 1e3)
    return summaries, statistics.median(times) if times else 0.0


def compare(expected: FrameSummary, found: FrameSummary) -> str | None:
    """Why ``found`` does not match the reference, or ``None``."""
    if expected.people and not found.people:
        return f"{expected.frame}: found nobody, the reference has {expected.people} people"
    slack = max(COUNT_SLACK, round(COUNT_SLACK_FRACTION * expected.people))
    if abs(found.people - expected.people) > slack:
        return f"{expected.frame}: {found.people} people, the reference has {expected.people}"
    if expected.boxes:
        if not found.boxes:
            return f"{expected.frame}: no boxes, the reference has {len(expected.boxes)}"
        ious = iou_matrix(
            np.asarray(expected.boxes, np.float32), np.asarray(found.boxes, np.float32)
        )
        recall = float((ious.max(axis=1) >= 0.5).mean())
        if recall < MIN_BOX_RECALL:
            return f"{expected.frame}: only {recall:.0%} of the reference boxes found again"
    return None


def run_selftest(
    detector: PersonDetector, manifest: BundleManifest, folder: Path
) -> SelfTestReport:
    """Run the bundle's reference frames (or, without any, one blank frame for latency)."""
    names = [summary.frame for summary in manifest.selftest.expected]
    try:
        frames = [(name, read_frame(folder / name)) for name in names]
    except UserError as exc:
        raise BundleError("self_test", str(exc)) from None
    if not frames:
        frames = [("blank", np.zeros((360, 640, 3), np.uint8))]
    try:
        found, latency = measure(detector, frames)
    except Exception as exc:  # noqa: BLE001 - any failure of a new model is a failed self-test
        return SelfTestReport(False, f"detection failed: {type(exc).__name__}: {exc}", 0.0)
    for expected, summary in zip(manifest.selftest.expected, found):
        problem = compare(expected, summary)
        if problem is not None:
            return SelfTestReport(False, problem, latency, found)
    budget = manifest.selftest.latency_budget_ms
    if latency > budget:
        return SelfTestReport(
            False, f"{latency:.0f} ms per frame exceeds the {budget:g} ms budget", latency, found
        )
    return SelfTestReport(
        True, f"{len(found)} frame(s) as expected, {latency:.0f} ms", latency, found
    )

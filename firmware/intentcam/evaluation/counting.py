"""People counting against per-frame ground truth counts (the Mall dataset's ``gt_counts.csv``).

A counting folder holds one video, ``gt_counts.csv`` (``frame,count``, 1-based frames) and
optionally ``roi_mask.png`` (the annotated region). Each evaluated frame's people are the
detections at or above the score threshold whose box centre lies in the region; the report is the
mean absolute error per frame and the ratio of the predicted mean to the true mean.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from intentcam.detect.base import PersonDetector
from intentcam.errors import UserError
from intentcam.progress import Progress, no_progress

VIDEO_SUFFIXES = (".mp4", ".avi", ".mpg", ".mkv", ".mov")
COUNTS_FILE = "gt_counts.csv"
ROI_FILE = "roi_mask.png"


@dataclass(frozen=True)
class CountingSequence:
    name: str
    video: Path
    #: frame number (1-based) -> true count.
    counts: dict[int, int]
    roi: np.ndarray | None


def is_counting_folder(folder: Path) -> bool:
    return (folder / COUNTS_FILE).is_file()


def load_counting(folder: Path) -> CountingSequence:
    """Read a counting folder; every problem is a one-line :class:`UserError`."""
    videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if len(videos) != 1:
        raise UserError(f"{folder}: expected one video beside {COUNTS_FILE}, found {len(videos)}")
    path = folder / COUNTS_FILE
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, dtype=np.int64)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read frame,count rows ({exc})") from None
    if table.shape[1] != 2 or not len(table):
        raise UserError(f"{path}: expected frame,count rows")
    roi = None
    if (folder / ROI_FILE).is_file():
        mask = cv2.imread(str(folder / ROI_FILE), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise UserError(f"{folder / ROI_FILE}: not a readable image")
        roi = mask > 0
    counts = {int(frame): int(count) for frame, count in table}
    return CountingSequence(folder.name, videos[0], counts, roi)


def evaluate_counting(
    sequence: CountingSequence,
    detector: PersonDetector,
    every: int = 1,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """Predicted vs true people per frame; see the module docstring."""
    capture = cv2.VideoCapture(str(sequence.video))
    if not capture.isOpened():
        raise UserError(f"{sequence.video}: cannot open video")
    last = max(sequence.counts)
    truth, predicted = [], []
    seconds = 0.0
    for number in progress(iter(range(1, last + 1)), last, sequence.name):
        ok, image = capture.read()
        if not ok:
            break
        if (number - 1) % every or number not in sequence.counts:
            continue
        started = time.perf_counter()
        detections = detector.detect(image)
        seconds += time.perf_counter() - started
        height, width = image.shape[:2]
        centres = detections.to_pixels(width, height).reshape(-1, 2, 2).mean(axis=1)
        if sequence.roi is not None and len(centres):
            x = np.clip(centres[:, 0].astype(int), 0, sequence.roi.shape[1] - 1)
            y = np.clip(centres[:, 1].astype(int), 0, sequence.roi.shape[0] - 1)
            people = int(sequence.roi[y, x].sum())
        else:
            people = len(detections)
        truth.append(sequence.counts[number])
        predicted.append(people)
    capture.release()
    if not truth:
        raise UserError(f"{sequence.video}: no decodable frames with a ground-truth count")
    gt, pred = np.array(truth, dtype=float), np.array(predicted, dtype=float)
    return {
        "sequence": sequence.name,
        "kind": "counting",
        "frames": len(gt),
        "every": every,
        "gt_mean": round(float(gt.mean()), 2),
        "pred_mean": round(float(pred.mean()), 2),
        "mae": round(float(np.abs(pred - gt).mean()), 2),
        "ratio": round(float(pred.mean() / gt.mean()), 3) if gt.mean() else None,
        "fps": round(len(gt) / max(seconds, 1e-9), 2),
    }

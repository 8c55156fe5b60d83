"""The detector's operating point, measured on data the tracker is *not* evaluated on.

Usage (from the repository root, after `make setup`):

    .venv/bin/python hw_bench/detector_operating_point.py [--step 4] [--tiling 2x2] [--json OUT]

The Mall dataset annotates every person's head in 400 frames (`gt_heads.csv`). A detection is a
true positive when it is matched one-to-one (Hungarian) to a head point lying inside the box's top
40 % (10 % margin); detections whose top centre lies outside the annotated region (`roi_mask.png`)
are ignored. Precision, recall and F1 per score threshold tell where the tracker's `high_score`
belongs; the CAVIAR tracking sequence is never used for this choice.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment
from tqdm import tqdm

from intentcam.benchmark import write_report
from intentcam.config import load_config
from intentcam.detect import build_detector

ROOT = Path(__file__).resolve().parents[1]
MALL = ROOT.parent / "shared" / "data" / "counting" / "mall_dataset"
THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)


def roi_mask() -> np.ndarray:
    """The Mall dataset's annotated region (True inside); a missing or unreadable mask ends the
    bench with a one-line error and exit status 2."""
    path = MALL / "roi_mask.png"
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        print(f"{Path(sys.argv[0]).stem}: {path}: missing or not an image", file=sys.stderr)
        raise SystemExit(2)
    return mask > 0


def heads_by_frame() -> dict[int, np.ndarray]:
    heads: dict[int, list[tuple[float, float]]] = {}
    with (MALL / "gt_heads.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            heads.setdefault(int(row["frame"]), []).append((float(row["x"]), float(row["y"])))
    return {frame: np.array(points) for frame, points in heads.items()}


def match(boxes: np.ndarray, heads: np.ndarray) -> int:
    """Detections matched one-to-one to head points in their upper part."""
    if len(boxes) == 0 or len(heads) == 0:
        return 0
    width = boxes[:, 2] - boxes[:, 0]
    height = boxes[:, 3] - boxes[:, 1]
    inside = (
        (heads[None, :, 0] >= boxes[:, None, 0] - 0.1 * width[:, None])
        & (heads[None, :, 0] <= boxes[:, None, 2] + 0.1 * width[:, None])
        & (heads[None, :, 1] >= boxes[:, None, 1] - 0.1 * height[:, None])
        & (heads[None, :, 1] <= boxes[:, None, 1] + 0.4 * height[:, None])
    )
    rows, cols = linear_sum_assignment(-inside.astype(float))
    return int(inside[rows, cols].sum())


def measure(step: int, tiling: str, config: Path | None) -> dict:
    roi = roi_mask()
    heads = heads_by_frame()
    detector = build_detector(load_config(config, overrides={"detector": {"tiling": tiling}}))
    capture = cv2.VideoCapture(str(MALL / "mall_frames_0001-0400.mp4"))
    totals = {t: [0, 0, 0] for t in THRESHOLDS}  # tp, fp, fn
    for number in tqdm(range(1, 401), desc="mall", unit="frame", disable=None):
        ok, image = capture.read()
        if not ok:
            break
        if (number - 1) % step:
            continue
        height, width = image.shape[:2]
        detections = detector.detect(image, min_score=min(THRESHOLDS))
        pixels = detections.to_pixels(width, height)
        top = np.column_stack([(pixels[:, 0] + pixels[:, 2]) / 2, pixels[:, 1]]).astype(int)
        top = np.clip(top, 0, [width - 1, height - 1])
        in_roi = roi[top[:, 1], top[:, 0]] if len(top) else np.zeros(0, bool)
        truth = heads.get(number, np.zeros((0, 2)))
        for threshold in THRESHOLDS:
            boxes = pixels[in_roi & (detections.scores >= threshold)]
            matched = match(boxes, truth)
            totals[threshold][0] += matched
            totals[threshold][1] += len(boxes) - matched
            totals[threshold][2] += len(truth) - matched
    rows = {}
    for threshold, (tp, fp, fn) in totals.items():
        precision = tp / max(tp + fp, 1)
        recall = tp / max(tp + fn, 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-9)
        rows[str(threshold)] = {
            "precision": round(precision, 3),
            "recall": round(recall, 3),
            "f1": round(f1, 3),
        }
    return {"frames_every": step, "tiling": tiling, "thresholds": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--step", type=int, default=4, help="use every N-th frame (default 4)")
    parser.add_argument("--tiling", default="2x2", help="detector tiling (default 2x2)")
    parser.add_argument("--config", type=Path, help="intentcam config (model dir etc.)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    args = parser.parse_args()
    results = measure(args.step, args.tiling, args.config)
    print("| score threshold | precision | recall | F1 |\n|---|---|---|---|")
    for threshold, row in results["thresholds"].items():
        print(f"| {threshold} | {row['precision']} | {row['recall']} | {row['f1']} |")
    write_report(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

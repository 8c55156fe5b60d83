"""A detector's operating point and the tracker's settings, chosen by leave-one-sequence-out.

Usage (from the repository root, after `make setup`):

    .venv/bin/python hw_bench/operating_point_loo.py --detector yolox_nano [--json OUT]

Nothing is tuned on the sequence it is reported on. Every shared ground-truth sequence takes its
turn as the held-out one: the parameters are chosen on all the others, then measured on it.

1. **Score threshold** (what counts as a person): detection F1 at IoU 0.5 on the CAVIAR
   sequences' boxes and head-in-box F1 on the Mall annotations (see detector_operating_point.py).
2. **Tracker** (``high_score``, ``low_score``, ``lost_ttl_s``, ``match_iou``, ``min_hits``): the
   mean of IDF1 + MOTA - line count error on the MOT sequences, each at 25, 12.5, 8.3 and
   6.25 fps (``--every`` 1-4), since cameras run at whatever rate their hardware allows.

The detector runs once per sequence (down to score 0.05); the grids reuse those detections.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment
from tqdm import tqdm

from detector_operating_point import heads_by_frame, match, roi_mask
from intentcam.benchmark import write_report
from intentcam.config import AnalyticsConfig, TrackerConfig, load_config
from intentcam.detect import build_detector
from intentcam.evaluation.runner import Detected, Evaluation, detect_sequence, gt_rows
from intentcam.evaluation.sequence import Sequence, load_sequence
from intentcam.models.manifest import OperatingPoint
from intentcam.track.bytetrack import TrackerSettings, iou_matrix

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
MOT = SHARED / "mot"
MALL = SHARED / "counting" / "mall_dataset"
FLOOR = 0.05
SCORES = tuple(round(v, 2) for v in np.arange(0.2, 0.76, 0.05))
EVERY = (1, 2, 3, 4)
GRID = {
    "high_score": (0.3, 0.4, 0.5, 0.6),
    "low_score": (0.1, 0.2),
    "lost_ttl_s": (1.0, 2.0, 3.0),
    "match_iou": (0.1, 0.2, 0.3),
    "min_hits": (2, 3),
}


def box_f1(truth: list[np.ndarray], found: list[tuple[np.ndarray, np.ndarray]], t: float) -> float:
    """Detection F1 at IoU 0.5 (one-to-one) over frames, for boxes scoring at least ``t``."""
    hits = n_found = n_truth = 0
    for gt, (boxes, scores) in zip(truth, found):
        kept = boxes[scores >= t]
        n_found += len(kept)
        n_truth += len(gt)
        if len(kept) and len(gt):
            overlap = iou_matrix(gt, kept)
            rows, cols = linear_sum_assignment(-overlap)
            hits += int((overlap[rows, cols] >= 0.5).sum())
    return 2 * hits / max(n_found + n_truth, 1)


def mall_f1(
    found: dict[int, tuple[np.ndarray, np.ndarray]],
    t: float,
    heads: dict[int, np.ndarray],
    roi: np.ndarray,
) -> float:
    """Head-in-box F1 on the Mall for boxes scoring at least ``t`` inside the region."""
    hits = n_found = n_truth = 0
    for frame, (boxes, scores) in found.items():
        kept = boxes[scores >= t]
        top = np.clip(((kept[:, 0] + kept[:, 2]) / 2).astype(int), 0, roi.shape[1] - 1)
        inside = roi[np.clip(kept[:, 1].astype(int), 0, roi.shape[0] - 1), top]
        kept = kept[inside]
        n_found += len(kept)
        n_truth += len(heads.get(frame, []))
        hits += match(kept, heads.get(frame, np.zeros((0, 2))))
    return 2 * hits / max(n_found + n_truth, 1)


def mall_detections(detector: Any, step: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    capture = cv2.VideoCapture(str(next(MALL.glob("*.mp4"))))
    found = {}
    for frame in tqdm(range(1, 401), desc="mall", leave=False, disable=None):
        ok, image = capture.read()
        if not ok:
            break
        if (frame - 1) % step:
            continue
        detections = detector.detect(image, min_score=FLOOR)
        height, width = image.shape[:2]
        found[frame] = (detections.to_pixels(width, height), detections.scores)
    return found


def subsample(detected: Detected, every: int) -> Detected:
    keep = [i for i, frame in enumerate(detected.frames) if (frame - 1) % every == 0]
    return Detected(
        [detected.frames[i] for i in keep], [detected.detections[i] for i in keep], detected.seconds
    )


def track_score(
    sequence: Sequence, detected: Detected, settings: TrackerSettings, analytics: AnalyticsConfig
) -> dict[str, float]:
    """Mean over frame rates of IDF1, MOTA, count error and the objective they make."""
    rows = []
    for every in EVERY:
        report = Evaluation(sequence, settings, analytics, every, peer=False).run(
            subsample(detected, every)
        )
        error = report["count_error"] or 0.0
        rows.append((report["idf1"], report["mota"], error))
    idf1, mota, error = (float(np.mean(column)) for column in zip(*rows))
    return {
        "idf1": round(idf1, 4),
        "mota": round(mota, 4),
        "count_error": round(error, 4),
        "objective": round(idf1 + mota - error, 4),
    }


def tracker_settings(values: dict[str, Any], score: float) -> TrackerSettings:
    point = OperatingPoint(
        score_threshold=score, high_score=values["high_score"], low_score=values["low_score"]
    )
    config = TrackerConfig(
        lost_ttl_s=values["lost_ttl_s"], match_iou=values["match_iou"], min_hits=values["min_hits"]
    )
    return TrackerSettings.from_config(config, point)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detector", required=True, help="manifest model id")
    parser.add_argument("--config", type=Path, help="intentcam config (model dir, tiling)")
    parser.add_argument("--mall-step", type=int, default=2, help="every N-th Mall frame")
    parser.add_argument("--json", type=Path, metavar="OUT")
    args = parser.parse_args()
    settings = load_config(args.config, overrides={"detector": {"model": args.detector}})
    detector = build_detector(settings)
    sequences = [
        load_sequence(folder)
        for folder in sorted(MOT.iterdir())
        if (folder / "seqinfo.ini").is_file()
    ]
    detected = {seq.name: detect_sequence(seq, detector, FLOOR) for seq in sequences}
    truth = {}
    for seq in sequences:
        scale = np.array([seq.width, seq.height] * 2, dtype=float)
        truth[seq.name] = [boxes * scale for _, _, boxes in gt_rows(seq, detected[seq.name].frames)]
    found = {
        name: [
            (d.boxes * np.array([s.width, s.height] * 2), d.scores)
            for d in detected[name].detections
        ]
        for name, s in ((seq.name, seq) for seq in sequences)
    }
    mall = mall_detections(detector, args.mall_step)

    # 1. score threshold, leave one of the three sets out.
    f1 = {name: {t: box_f1(truth[name], found[name], t) for t in SCORES} for name in truth}
    heads = heads_by_frame()
    roi = roi_mask()
    f1["mall_dataset"] = {t: mall_f1(mall, t, heads, roi) for t in SCORES}
    score_folds = {}
    for held in f1:
        others = [name for name in f1 if name != held]
        chosen = max(SCORES, key=lambda t: np.mean([f1[name][t] for name in others]))
        score_folds[held] = {
            "chosen": chosen,
            "held_out_f1": round(f1[held][chosen], 4),
            "best_possible_f1": round(max(f1[held].values()), 4),
        }
    score = max(SCORES, key=lambda t: np.mean([f1[name][t] for name in f1]))

    # 2. tracker grid, leave one MOT sequence out.
    combos = [
        dict(zip(GRID, values))
        for values in itertools.product(*GRID.values())
        if values[1] < values[0]
    ]
    results: dict[str, list[dict[str, float]]] = {seq.name: [] for seq in sequences}
    for values in tqdm(combos, desc="tracker grid", disable=None):
        for seq in sequences:
            results[seq.name].append(
                track_score(
                    seq, detected[seq.name], tracker_settings(values, score), settings.analytics
                )
            )
    folds = {}
    for held in results:
        others = [name for name in results if name != held]
        best = max(
            range(len(combos)),
            key=lambda i: np.mean([results[name][i]["objective"] for name in others]),
        )
        folds[held] = {"chosen": combos[best], "held_out": results[held][best]}
    overall = max(
        range(len(combos)),
        key=lambda i: np.mean([results[name][i]["objective"] for name in results]),
    )
    report = {
        "detector": args.detector,
        "score_threshold": {
            "chosen_on_all": score,
            "folds": score_folds,
            "f1": {
                name: {str(t): round(v, 4) for t, v in curve.items()} for name, curve in f1.items()
            },
        },
        "tracker": {
            "chosen_on_all": combos[overall],
            "on_all": {name: results[name][overall] for name in results},
            "folds": folds,
        },
    }
    print(json.dumps(report, indent=2))
    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What tiling gains: people found per frame and ms per frame for each layout, in one run.

Usage (from the repository root, after `make setup`):

    .venv/bin/python hw_bench/tiling_gain.py [--frames N] [--threads N] [--json OUT]

Runs the configured detector with tiling 1x1, 2x1, 2x2 (each multi-tile layout also runs the
whole frame once) and auto over the first N frames of the concourse clip and the Mall clip, and
compares people per frame with the Mall ground truth (`gt_counts.csv`, people in the annotated
region per frame). Times are measured in this run on this machine; compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from intentcam.benchmark import write_report
from intentcam.config import load_config
from intentcam.detect import build_detector
from intentcam.detect.tiled import TiledDetector

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CLIPS = {
    "concourse": DATA / "concourse_overhead.avi",
    "mall": DATA / "counting" / "mall_dataset" / "mall_frames_0001-0400.mp4",
}
MALL_GT = DATA / "counting" / "mall_dataset" / "gt_counts.csv"
LAYOUTS = ("1x1", "2x1", "2x2", "auto")


def read_frames(path: Path, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    while len(frames) < count:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    if not frames:
        raise SystemExit(f"error: {path}: no frames")
    return frames


def mall_truth(count: int) -> np.ndarray:
    with MALL_GT.open(newline="", encoding="utf-8") as handle:
        return np.array([int(row["count"]) for row in csv.DictReader(handle)][:count])


def measure(frames: int, threads: int, config: Path | None, model: str | None = None) -> dict:
    results: dict = {"frames": frames, "threads": threads, "clips": {}}
    truth = mall_truth(frames)
    for clip, path in CLIPS.items():
        images = read_frames(path, frames)
        rows: dict[str, dict[str, Any]] = {}
        for layout in LAYOUTS:
            settings = load_config(
                config,
                overrides={
                    "detector": {"tiling": layout, "threads": threads}
                    | ({"model": model} if model else {})
                },
            )
            detector = build_detector(settings)
            # Every detector family tiles; the layout it chose is this bench's first column.
            assert isinstance(detector, TiledDetector)
            detector.detect(images[0])  # warm-up: first invoke allocates
            counts = []
            started = time.perf_counter()
            for image in tqdm(images, desc=f"{clip} {layout}", leave=False, disable=None):
                counts.append(len(detector.detect(image)))
            elapsed = time.perf_counter() - started
            height, width = images[0].shape[:2]
            row: dict[str, Any] = {
                "layout": detector.layout_for(width, height)[0],
                "invokes_per_frame": detector.last.invokes,
                "people_per_frame": round(float(np.mean(counts)), 2),
                "ms_per_frame": round(elapsed / len(images) * 1e3, 1),
            }
            if clip == "mall":
                found = np.array(counts)
                gt = truth[: len(found)]
                row["gt_people_per_frame"] = round(float(gt.mean()), 2)
                row["found_over_gt"] = round(float(found.sum() / gt.sum()), 3)
                row["mean_abs_error"] = round(float(np.abs(found - gt).mean()), 2)
            rows[layout] = row
        base = rows["1x1"]
        for row in rows.values():
            row["people_vs_1x1"] = round(
                row["people_per_frame"] / max(base["people_per_frame"], 1e-9), 2
            )
            row["cost_vs_1x1"] = round(row["ms_per_frame"] / max(base["ms_per_frame"], 1e-9), 2)
        results["clips"][clip] = rows
    return results


def table(results: dict) -> str:
    lines = [
        f"frames per clip: {results['frames']}, threads: {results['threads']}",
        "",
        "| clip | tiling | invokes | people/frame | x 1x1 | ms/frame | x 1x1 | GT people/frame | MAE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for clip, rows in results["clips"].items():
        for name, row in rows.items():
            layout = name if name != "auto" else f"auto ({row['layout']})"
            lines.append(
                f"| {clip} | {layout} | {row['invokes_per_frame']} | "
                f"{row['people_per_frame']} | {row['people_vs_1x1']} | "
                f"{row['ms_per_frame']} | {row['cost_vs_1x1']} | "
                f"{row.get('gt_people_per_frame', '-')} | {row.get('mean_abs_error', '-')} |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100, help="frames per clip (default 100)")
    parser.add_argument("--threads", type=int, default=2, help="inference threads (default 2)")
    parser.add_argument("--config", type=Path, help="intentcam config (model dir etc.)")
    parser.add_argument("--detector", help="person detector model id (default: detector.model)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    args = parser.parse_args()
    results = measure(args.frames, args.threads, args.config, args.detector)
    print(table(results))
    write_report(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

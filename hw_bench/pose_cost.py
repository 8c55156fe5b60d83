"""Cost of the shelf pose pipeline with 0, 1, 3 and 10 people at shelves, and what it leaves of
the frame rate.

Usage (from the repository root, after `make setup`):

    .venv/bin/python hw_bench/pose_cost.py [--frames N] [--config FILE] [--json OUT]

1. **Per frame, unbudgeted**: on real concourse frames (15-20 people), the detector runs, then
   MoveNet on the first N detected people (N = 0, 1, 3, 10): pose ms per frame beside the
   detector's ms per frame, in the same run.
2. **The daemon's loop, budgeted** (`[shelf] budget_share`, default 0.1): the pipeline's fps on
   the same frames with no shelf zone, then with a shelf zone over the whole frame (everyone is
   at a shelf: the worst case), then with the budget lifted (every person every
   `pose_interval_s`), alternating and best of three rounds each. The detector's tiling is
   pinned to the one it runs without shelves (``auto`` would run a view with shelves untiled,
   which also changes the detector's own cost), so the runs differ in the poses only. The
   issue's bar: fps with shelves >= 0.8x without. Also reported: how many poses a person
   standing at the shelf gets, and one walking past (poses per person and frame): under the
   budget the walkers wait for those standing.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from intentcam.benchmark import ClipAsCamera, write_report
from intentcam.capture import VideoFileSource
from intentcam.config import Settings, load_config
from intentcam.detect import build_detector
from intentcam.pipeline import build_pipeline
from intentcam.pose.build import build_pose_model
from intentcam.sinks import NullSink

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CLIP = DATA / "concourse_overhead.avi"
PEOPLE = (0, 1, 3, 10)
WHOLE_FRAME = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]


def per_frame(settings: Settings, frames: int) -> dict[str, Any]:
    """Detector ms and unbudgeted pose ms per frame for each N of :data:`PEOPLE`."""
    detector = build_detector(settings)
    pose = build_pose_model(settings)
    source = VideoFileSource(CLIP)
    detect_ms: list[float] = []
    pose_ms: dict[int, list[float]] = {n: [] for n in PEOPLE}
    short = 0
    for _ in tqdm(range(frames), desc="per frame", leave=False, disable=None):
        frame = source.read()
        if frame is None:
            break
        started = time.perf_counter()
        boxes = detector.detect(frame.image).boxes
        detect_ms.append((time.perf_counter() - started) * 1e3)
        short += len(boxes) < max(PEOPLE)
        for n in PEOPLE:
            started = time.perf_counter()
            for box in boxes[:n]:
                pose.keypoints(frame.image, box)
            pose_ms[n].append((time.perf_counter() - started) * 1e3)
    source.close()
    detector_ms = float(np.mean(detect_ms))
    return {
        "layout": detector.last.layout,
        "frames": len(detect_ms),
        "frames_with_fewer_than_10_people": short,
        "detector_ms_mean": round(detector_ms, 2),
        "pose_ms_mean": {n: round(float(np.mean(v)), 2) for n, v in pose_ms.items()},
        "pose_over_detector": {
            n: round(float(np.mean(v)) / detector_ms, 3) for n, v in pose_ms.items()
        },  # fmt: skip
    }


def pipeline_fps(settings: Settings, frames: int) -> tuple[float, float, float, float]:
    """(fps, poses per frame, poses per frame of a person standing at a shelf, of one walking
    past) of the daemon's loop on the clip read as a camera, motion gate off, no fps cap."""
    source = ClipAsCamera(CLIP, frames)
    pipeline = build_pipeline(settings, source, NullSink(), gated=False, report_every_s=3600)
    started = time.perf_counter()
    summary = pipeline.run(threading.Event(), max_frames=frames)
    elapsed = time.perf_counter() - started
    source.close()
    view = pipeline.view
    counts = view.poses.counts if view is not None and view.poses is not None else Counter[str]()
    standing = (counts["poses"] - counts["passing_posed"]) / max(
        counts["seen"] - counts["passing_seen"], 1
    )
    walking = counts["passing_posed"] / max(counts["passing_seen"], 1)
    poses = counts["poses"] / max(summary["frames"], 1)
    return summary["frames"] / elapsed, poses, standing, walking


def budgeted(config: Path | None, frames: int, layout: str) -> dict[str, Any]:
    """The loop with no shelf, with a whole-frame shelf (budgeted), and unbudgeted; the
    detector tiled ``layout`` in all three."""
    uncapped = {"camera": {"fps_cap": None}, "detector": {"tiling": layout}}
    shelf = {**uncapped, "zones": [{"id": "shelf", "kind": "shelf", "points": WHOLE_FRAME}]}
    variants = {
        "no_shelf": load_config(config, overrides=uncapped),
        "shelf_budgeted": load_config(config, overrides=shelf),
        "shelf_unbudgeted": load_config(config, overrides={**shelf, "shelf": {"budget_share": 2}}),
    }
    best: dict[str, tuple[float, float, float, float]] = {}
    for _ in tqdm(range(3), desc="pipeline rounds", leave=False, disable=None):
        for name, settings in variants.items():
            measured = pipeline_fps(settings, frames)
            if name not in best or measured[0] > best[name][0]:
                best[name] = measured
    base = best["no_shelf"][0]
    return {
        name: {
            "fps": round(fps, 2),
            "poses_per_frame": round(poses, 2),
            "fps_ratio": round(fps / base, 3),
            "poses_per_standing_person": round(standing, 3),
            "poses_per_walking_person": round(walking, 3),
        }  # fmt: skip
        for name, (fps, poses, standing, walking) in best.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=150, help="frames per measurement")
    parser.add_argument("--config", type=Path, help="intentcam config (model dir, detector)")
    parser.add_argument("--json", type=Path, metavar="OUT")
    args = parser.parse_args()
    settings = load_config(args.config)
    rows = per_frame(settings, args.frames)
    result: dict[str, Any] = {"clip": CLIP.name, "per_frame": rows,
              "pipeline": budgeted(args.config, args.frames, rows["layout"])}  # fmt: skip
    print(f"detector {rows['detector_ms_mean']} ms/frame on {rows['frames']} frames, "
          f"tiled {rows['layout']}")  # fmt: skip
    print("| people at shelves | pose ms/frame (unbudgeted) | x detector |\n|---|---|---|")
    for n in PEOPLE:
        print(f"| {n} | {rows['pose_ms_mean'][n]} | {rows['pose_over_detector'][n]} |")
    print(
        "| loop | fps | poses/frame | fps vs no shelf | poses/frame, a standing / walking person |"
    )
    print("|---|---|---|---|---|")
    for name, row in result["pipeline"].items():
        print(f"| {name} | {row['fps']} | {row['poses_per_frame']} | {row['fps_ratio']} | "
              f"{row['poses_per_standing_person']} / {row['poses_per_walking_person']} |")  # fmt: skip
    write_report(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

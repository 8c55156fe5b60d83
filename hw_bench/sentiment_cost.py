"""Cost of expression sampling per frame with 0, ~5 and ~15 tracked people, on real clips.

Usage (from the repository root, after `make setup`):

    .venv/bin/python hw_bench/sentiment_cost.py [--frames N] [--json OUT]

Runs detection and tracking with expression inference on (default cadence 2 samples/s per track,
15 ms budget per frame) and reports the sentiment stage's ms per frame beside the number of
tracked people: the Intel room before anyone arrives (0), the Intel face clip (a few people
walking up to the camera) and the CAVIAR corridor (about 5), the concourse (about 15-20).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from intentcam.benchmark import write_report
from intentcam.capture import VideoFileSource
from intentcam.config import load_config
from intentcam.detect import build_detector
from intentcam.view import CameraView

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CLIPS = {
    "empty room (Intel, first 60 frames)": (
        DATA / "videos" / "intel_one_by_one_person_detection.mp4",
        60,
    ),
    "faces walking up (Intel preview)": (
        DATA / "videos" / "intel_face_demographics_walking_and_pause_preview.avi",
        None,
    ),
    "corridor (CAVIAR)": (DATA / "mot" / "caviar_oneleaveshop1_cor" / "video.mpg", None),
    "concourse": (DATA / "concourse_overhead.avi", None),
}


def measure(clip: Path, limit: int | None, frames: int, config: Path | None) -> dict:
    settings = load_config(
        config, overrides={"privacy": {"expression_inference": True, "shopper_notice": "benchmark"}}
    )
    detector = build_detector(settings)
    source = VideoFileSource(clip)
    view = None
    costs, people = [], []
    count = min(frames, limit) if limit else frames
    for _ in tqdm(range(count), leave=False, disable=None, desc=clip.name):
        frame = source.read()
        if frame is None:
            break
        if view is None:
            view = CameraView.from_settings(
                settings, frame.size[0] / frame.size[1], detector.operating_point
            )
        view.process(
            detector.detect(frame.image, min_score=view.low_score), frame.timestamp, frame.image
        )
        costs.append(view.stage_ms.get("sentiment", 0.0))
        people.append(view.people_now)
    assert view is not None and view.faces is not None
    values = np.array(costs)
    return {
        "frames": len(costs),
        "tracked_people_mean": round(float(np.mean(people)), 1),
        "sentiment_ms_mean": round(float(values.mean()), 2),
        "sentiment_ms_p95": round(float(np.percentile(values, 95)), 2),
        "faces": dict(view.faces.counts),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200, help="frames per clip (default 200)")
    parser.add_argument("--config", type=Path, help="intentcam config (model dir, faces)")
    parser.add_argument("--json", type=Path, metavar="OUT")
    args = parser.parse_args()
    results = {
        name: measure(path, limit, args.frames, args.config)
        for name, (path, limit) in CLIPS.items()
    }
    print(
        "| clip | frames | tracked people | sentiment ms/frame mean | p95 | faces |\n|---|---|---|---|---|---|"
    )
    for name, row in results.items():
        print(
            f"| {name} | {row['frames']} | {row['tracked_people_mean']} | "
            f"{row['sentiment_ms_mean']} | {row['sentiment_ms_p95']} | {row['faces']} |"
        )
    write_report(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

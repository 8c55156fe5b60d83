"""``intentcam detect IMAGE``: the people the detector finds in one image (installer check)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from intentcam.cli.common import add_config_option, nested, settings_from

NAME = "detect"


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        NAME,
        help="find the people in one image",
        description="Run the configured person detector on one image and print the people "
        "found: normalised box (x1, y1, x2, y2 in 0..1), pixel box and score.",
    )
    parser.add_argument("image", type=Path, metavar="IMAGE", help="JPEG, PNG, BMP, ... file")
    add_config_option(parser)
    parser.add_argument(
        "--tiling", choices=["1x1", "2x1", "2x2", "auto"], help="override detector.tiling"
    )
    parser.add_argument(
        "--threshold", type=float, metavar="SCORE", help="override detector.score_threshold (0..1)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: `intentcam --help` and the other commands do not pay for them.
    from intentcam.capture.files import read_image
    from intentcam.detect import build_detector
    from intentcam.records import people_in_words

    image = read_image(args.image)
    assert image is not None
    settings = settings_from(
        args, nested(detector={"tiling": args.tiling, "score_threshold": args.threshold})
    )
    detector = build_detector(settings)
    started = time.perf_counter()
    detections = detector.detect(image)
    elapsed_ms = (time.perf_counter() - started) * 1e3
    height, width = image.shape[:2]
    layout = detector.last.layout
    delegate = detector.describe()["delegate"]
    pixels = detections.to_pixels(width, height)
    report: dict[str, Any] = {
        "image": str(args.image),
        "width": width,
        "height": height,
        "count": len(detections),
        "people": [
            {
                "score": round(float(score), 3),
                "box": [round(float(v), 4) for v in box],
                "box_px": [int(round(float(v))) for v in px],
            }
            for score, box, px in zip(detections.scores, detections.boxes, pixels)
        ],
        "model": detector.describe()["id"],
        "tiling": layout,
        "invokes": detector.last.invokes,
        "delegate": delegate,
        "ms": round(elapsed_ms, 1),
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"{people_in_words(len(detections))} in {args.image} ({width}x{height}, tiling {layout}, "
        f"{detector.last.invokes} invoke(s), {elapsed_ms:.0f} ms on {delegate})"
    )
    for number, person in enumerate(report["people"], start=1):
        x1, y1, x2, y2 = person["box_px"]
        print(f"  #{number}  score {person['score']:.2f}  box ({x1}, {y1}) - ({x2}, {y2}) px")
    return 0

"""Two labellers of the shelf clips: how far they agree, and the detector scored against each.

Usage (from the repository root, after `make setup`):

    .venv/bin/python hw_bench/shelf_agreement.py [--labels evaluation/shelf]
        [--second evaluation/shelf/second] [--clips ../shared/data/shelf] [--labels-only]
        [--json OUT]

The issue's check scores reaches against labels someone else made. ``evaluation/shelf/second``
holds a second, blind labelling of the same clips under the same written protocol (its own
polygons too). This prints, per clip, reach events both labellers have (starts within 0.5 s,
as the detector is scored), each one's count, how far their matched starts differ, and how much
their shelf polygons overlap (intersection over union); then, unless ``--labels-only``, the
detector with the shipped ``[shelf]`` thresholds scored against each labeller, on their own
polygons (the poses are taken for each labeller's polygons: who is at a shelf depends on them).
Nothing is chosen on it. The result of 2026-11-23 is in evaluation/shelf/README.md
("Eighteenth session"); ``--labels evaluation/shelf/adjudicated`` measures either labeller
against the settled labels ("Twenty-third session").
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from intentcam.analytics.shelf import ShelfSettings
from intentcam.benchmark import write_report
from intentcam.evaluation.shelf import ClipPoses
from intentcam.evaluation.shelf_agreement import agreement
from intentcam.evaluation.shelf_labels import LabelledClip
from intentcam.resources import project_file
from shelf_clips import add_clip_arguments, clip_labels, reach_row, shipped_settings

PROG = "shelf_agreement"
SPLITS = ("tune", "test", "all")


def print_agreement(result: dict[str, Any]) -> None:
    """Per clip: reach both/second/first, matched start shifts, polygon overlap; then totals."""
    print(
        f"{'clip':<30} {'split':<5} {'reach b/2nd/1st':>15}  {'start shifts (s)':<22} polygon IoU"
    )
    for row in result["clips"]:
        reach = "/".join(map(str, row["reach"]))
        shifts = ", ".join(f"{s:+.2f}" for s in row["reach_start_shifts_s"]) or "-"
        ious = ", ".join(f"{iou:.2f}" for iou in row["polygon_iou"].values())
        print(f"{row['clip'][:30]:<30} {row['split']:<5} {reach:>15}  {shifts:<22} {ious}")
    for split in SPLITS:
        total = result["total"][split]
        reach = total["reach"]
        print(
            f"{split}: reach {reach['both']} both / {reach['second']} second / {reach['first']} "
            f"first (of the first's {reach['of_first']}, of the second's {reach['of_second']}); "
            f"matched starts differ by {total['reach_start_shift_s']['median']} s median; "
            f"polygon IoU median {total['polygon_iou']['median']}, lowest "
            f"{total['polygon_iou']['lowest']}"
        )
    if result["only_first"] or result["only_second"]:
        print(f"labelled by one only: {result['only_first'] + result['only_second']}")


def detector_rows(
    labellers: dict[str, list[LabelledClip]],
    settings: ShelfSettings,
    poses_of: Callable[[LabelledClip], ClipPoses],
) -> list[dict[str, Any]]:
    """The detector with ``settings`` against each labeller, on that labeller's polygons (the
    poses taken for them): reach [matched, detected, labelled] per split and the test clips'
    false events per quiet minute."""
    rows = []
    for name, clips in labellers.items():
        pairs = [
            (clip, poses_of(clip)) for clip in tqdm(clips, desc=name, unit="clip", leave=False)
        ]
        rows.append(reach_row(name, pairs, settings, SPLITS))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_clip_arguments(parser, json_help="also write the agreement and the detector rows as JSON")
    parser.add_argument("--second", type=Path, default=project_file("evaluation/shelf/second"),
                        help="folder of the second labeller's labels.json")  # fmt: skip
    parser.add_argument("--labels-only", action="store_true",
                        help="compare the labels only; run no detector")  # fmt: skip
    args = parser.parse_args()
    first, second = (clip_labels(args.clips, folder, PROG) for folder in (args.labels, args.second))
    result = agreement(first, second)
    print_agreement(result)
    report: dict[str, Any] = {"agreement": result}
    if not args.labels_only:
        settings, poses_of = shipped_settings()
        report["detector"] = rows = detector_rows(
            {"first": first, "second": second}, settings, poses_of
        )
        print(f"\n{'detector against':<18} {'tune m/d/l':>10} {'test m/d/l':>10} {'false/min':>9}")
        for row in rows:
            tune, test = ("/".join(map(str, row[split])) for split in ("tune", "test"))
            false = row["test_false_per_quiet_minute"]
            print(f"{row['labels'] + ' labeller':<18} {tune:>10} {test:>10} {false!s:>9}")
    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

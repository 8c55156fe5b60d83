"""Would another labeller's labels score the same? The shelf labels, drawn and dated otherwise.

Usage (from the repository root, after `make setup`):

    .venv/bin/python hw_bench/shelf_labellers.py [--clips ../shared/data/shelf] [--json OUT]

The issue's check uses clips labelled by someone else, who will draw the shelf polygons a little
differently and may date a reach from another moment (the arm starting out rather than the hand
arriving at the products). This bench keeps the videos and the *shipped* ``[shelf]`` thresholds
and changes the labels only: every polygon scaled about its centre (10 % smaller, 10 % larger;
the people at a shelf, and so the poses taken, change with it), and every reach (and put-back)
starting earlier or later by 0.2 s and 0.4 s (in whole frames; the events of the daemon
unchanged, only their scoring). Reach matched/detected/labelled on the tune and test clips, false events per quiet
minute. Nothing is chosen on it. The result of 2026-11-23 is in evaluation/shelf/README.md
("Eleventh session").
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from tqdm import tqdm

from intentcam.analytics.shelf import ShelfSettings
from intentcam.benchmark import write_report
from intentcam.evaluation.shelf import ClipPoses
from intentcam.evaluation.shelf_labels import LabelledClip
from shelf_clips import Pairs, add_clip_arguments, clips_with_poses, reach_row


@dataclass(frozen=True)
class LabelVariant:
    """Labels as another labeller might make them: polygons scaled by ``scale`` about their
    centre, reach and put-back starts moved by ``shift_s`` seconds."""

    name: str
    scale: float = 1.0
    shift_s: float = 0.0


VARIANTS = (
    LabelVariant("as labelled"),
    LabelVariant("polygons 10% smaller", scale=0.9),
    LabelVariant("polygons 10% larger", scale=1.1),
    LabelVariant("reach starts 0.4 s earlier", shift_s=-0.4),
    LabelVariant("reach starts 0.2 s earlier", shift_s=-0.2),
    LabelVariant("reach starts 0.2 s later", shift_s=0.2),
    LabelVariant("reach starts 0.4 s later", shift_s=0.4),
)


def scaled_polygon(points: list[list[float]], scale: float) -> list[list[float]]:
    """``points`` (normalised) scaled about their mean, kept inside the frame."""
    cx = sum(x for x, _ in points) / len(points)
    cy = sum(y for _, y in points) / len(points)
    return [[min(max(cx + (x - cx) * scale, 0.0), 1.0), min(max(cy + (y - cy) * scale, 0.0), 1.0)]
            for x, y in points]  # fmt: skip


def relabelled(clip: LabelledClip, variant: LabelVariant, fps: float) -> LabelledClip:
    """``clip`` with its polygons and reach starts changed as ``variant`` says; a start moves
    no earlier than the clip's first frame and no later than its event's last."""
    shift = round(variant.shift_s * fps)
    events = {
        shelf: [
            replace(e, start=min(max(e.start + shift, 0), e.end))
            if e.kind in ("reach", "put_back") else e
            for e in found
        ]
        for shelf, found in clip.events.items()
    }  # fmt: skip
    shelves = {
        shelf: scaled_polygon(points, variant.scale) for shelf, points in clip.shelves.items()
    }
    return replace(clip, shelves=shelves, events=events)


def variant_pairs(pairs: Pairs, variant: LabelVariant,
                  poses_of: Callable[[LabelledClip], ClipPoses]) -> Pairs:  # fmt: skip
    """The clips relabelled by ``variant``, with their poses: taken again where the polygons
    changed (who is at a shelf depends on them), else the labelled clips' own."""
    moved = [(relabelled(clip, variant, poses.fps), poses) for clip, poses in pairs]
    if variant.scale == 1.0:
        return moved
    return [(clip, poses_of(clip)) for clip, _ in tqdm(moved, desc=variant.name, leave=False)]


def reach_rows(by_variant: dict[str, Pairs], settings: ShelfSettings) -> list[dict[str, Any]]:
    """Per variant: reach [matched, detected, labelled] on the tune and the test clips, and the
    test clips' false events per quiet minute."""
    return [reach_row(name, pairs, settings) for name, pairs in by_variant.items()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_clip_arguments(parser, json_help="also write the rows as JSON")
    args = parser.parse_args()
    settings, pairs, poses_of = clips_with_poses(args, "shelf_labellers")
    by_variant = {v.name: variant_pairs(pairs, v, poses_of) for v in VARIANTS}
    rows = reach_rows(by_variant, settings)
    print(f"{'labels':<30} {'tune m/d/l':>10} {'test m/d/l':>10} {'false/min':>9}")
    for row in rows:
        tune, test = ("/".join(map(str, row[split])) for split in ("tune", "test"))
        print(
            f"{row['labels']:<30} {tune:>10} {test:>10} {row['test_false_per_quiet_minute']!s:>9}"
        )
    write_report(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

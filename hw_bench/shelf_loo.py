"""Held-out reach figures from every labelled clip: leave-one-clip-out.

Usage (from the repository root, after `make setup`):

    .venv/bin/python hw_bench/shelf_loo.py [--clips ../shared/data/shelf] [--labels DIR]
        [--json OUT]

``eval-shelf`` chooses the ``[shelf]`` thresholds on the clips labelled ``tune`` and reports on
those labelled ``test``: 11 held-out reaches, where one event moves recall by 0.09. Here every
clip is held out in turn: thresholds chosen by the same grid on the other clips, the held-out
clip scored with them, the counts pooled, so every labelled reach is a held-out one. What this
does not re-choose: the design decisions made over the sessions (the crop, the arm test, the
pace), some of them after looking at test clips (evaluation/shelf/README.md says which), so
this is the grid's generalisation, not a blind result. ``--labels evaluation/shelf/second``
runs it on the second labeller's events and polygons, ``--labels evaluation/shelf/adjudicated``
on the two labellings settled. Results in evaluation/shelf/README.md ("Twenty-first session",
"Twenty-third session").
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tqdm import tqdm

from intentcam.analytics.shelf import ShelfSettings
from intentcam.benchmark import write_report
from intentcam.evaluation.shelf import GRID, choose, leave_one_out
from shelf_clips import Pairs, add_clip_arguments, clips_with_poses


def _count(counts: list[int]) -> str:
    return "/".join(str(value) for value in counts)


def _pooled_line(label: str, total: dict[str, Any]) -> str:
    reach = total["reach"]
    counts = _count([reach["matched"], reach["detected"], reach["labelled"]])
    return f"{label}: reach {counts}, precision / recall {reach['precision']} / {reach['recall']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="shelf_loo.py",
        description="Leave-one-clip-out: every labelled shelf clip scored with thresholds "
        "chosen on the others; reach matched/detected/labelled per clip and pooled.",
    )
    add_clip_arguments(parser, "write the per-clip results and the pooled totals there")
    args = parser.parse_args(argv)
    shipped, pairs, _ = clips_with_poses(args, parser.prog)
    folds = tqdm(total=len(pairs), desc="folds", unit="clip", leave=False)

    def chooser(others: Pairs, base: ShelfSettings) -> tuple[ShelfSettings, float]:
        folds.update()
        return choose(others, base)

    result = leave_one_out(pairs, shipped, chooser)
    folds.close()
    rows = result["clips"]
    print("| clip | split | reach m/d/l | thresholds chosen without it |")
    print("|---|---|---|---|")
    for row in rows:
        chosen = ", ".join(f"{name} {row['settings'][name]}" for name in GRID)
        print(f"| {row['clip']} | {row['split']} | {_count(row['reach'])} | {chosen} |")
    print(_pooled_line("all clips", result["total"]))
    for split in ("test", "tune"):
        if split in result["splits"]:
            print(_pooled_line(f"{split} clips", result["splits"][split]))
    print(f"false events per quiet minute, all clips: {result['total']['false_per_quiet_minute']}")
    if args.json:
        write_report({"labels": str(args.labels), **result}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

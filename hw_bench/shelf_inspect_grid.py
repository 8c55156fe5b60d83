"""Inspect thresholds chosen on the tune clips, as the reach thresholds are by ``eval-shelf``.

Usage (from the repository root, after `make setup`):

    .venv/bin/python hw_bench/shelf_inspect_grid.py [--clips ../shared/data/shelf] [--json OUT]

``[shelf] inspect_s`` (how long a hand must stay off the shelf) and ``away`` (how far, in image
heights, a wrist must be carried off it) over a grid, the reach thresholds as shipped: inspect F1
on the clips labelled ``tune`` picks the setting, the ``test`` clips are only reported. The poses
are computed once per clip (as ``eval-shelf`` computes them) and reused for every grid point.
The result of 2026-11-23 is in evaluation/shelf/README.md ("Seventh session").
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import replace
from typing import Any

from intentcam.analytics.shelf import ShelfSettings
from intentcam.benchmark import write_report
from intentcam.evaluation.shelf import f1, matched_detected_labelled, score
from shelf_clips import add_clip_arguments, clips_with_poses

INSPECT_S = (0.3, 0.5, 0.7, 1.0, 1.5)
AWAY = (0.0, 0.03, 0.06, 0.1, 0.15)


def grid_rows(tune: list[Any], test: list[Any], shipped: ShelfSettings) -> list[dict[str, Any]]:
    """One row per grid point: inspect [matched, detected, labelled] on tune and test, and the
    tune inspect F1 it is chosen by; best first (ties: the shipped order of the grid)."""
    rows = []
    for inspect_s, away in itertools.product(INSPECT_S, AWAY):
        settings = replace(shipped, inspect_s=inspect_s, away=away)
        tuned, tested = score(tune, settings), score(test, settings)
        counts = {
            name: matched_detected_labelled(result, "inspect")
            for name, result in (("tune", tuned), ("test", tested))
        }
        rows.append({"inspect_s": inspect_s, "away": away, "tune_f1": round(f1(tuned, "inspect"), 3),
                     "shipped": settings == shipped, **counts})  # fmt: skip
    return sorted(rows, key=lambda row: -row["tune_f1"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_clip_arguments(parser, json_help="also write the rows as JSON")
    args = parser.parse_args()
    settings, pairs, _ = clips_with_poses(args, "shelf_inspect_grid")
    tune = [pair for pair in pairs if pair[0].split == "tune"]
    test = [pair for pair in pairs if pair[0].split == "test"]
    rows = grid_rows(tune, test, settings)
    print(f"{'inspect_s':>9} {'away':>5} {'tune F1':>7} {'tune m/d/l':>10} {'test m/d/l':>10}")
    for row in rows:
        cells = ["/".join(map(str, row[name])) for name in ("tune", "test")]
        mark = "  (shipped)" if row["shipped"] else ""
        print(f"{row['inspect_s']:>9} {row['away']:>5} {row['tune_f1']:>7} {cells[0]:>10} "
              f"{cells[1]:>10}{mark}")  # fmt: skip
    write_report(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Evaluating over several sequences: finding them, and the mean row across them.

Accuracy is reported on every sequence, never on one clip: ``intentcam eval`` takes sequence
folders, or folders of them, and prints one row per sequence plus the mean, for our tracker and
the peer on the same detections. Counting folders (``gt_counts.csv``) are reported beside them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from intentcam.analytics.lines import IN, OUT
from intentcam.errors import UserError
from intentcam.evaluation.counting import is_counting_folder

Kind = Literal["mot", "counting"]
#: Tracking metrics averaged over sequences (ID switches are summed).
MEAN_KEYS = ("mota", "idf1", "hota", "recall", "precision")


def _kind(folder: Path) -> Kind | None:
    if (folder / "seqinfo.ini").is_file():
        return "mot"
    if is_counting_folder(folder):
        return "counting"
    return None


def discover(paths: list[Path]) -> list[tuple[Kind, Path]]:
    """Every sequence named, or found one level below a named folder, in name order."""
    found: list[tuple[Kind, Path]] = []
    for path in paths:
        if not path.is_dir():
            raise UserError(f"{path}: not a folder")
        kind = _kind(path)
        if kind is not None:
            found.append((kind, path))
            continue
        children = []
        for child in sorted(path.iterdir()):
            child_kind = _kind(child) if child.is_dir() else None
            if child_kind is not None:
                children.append((child_kind, child))
        if not children:
            raise UserError(
                f"{path}: no seqinfo.ini (expected a MOTChallenge-style folder, a counting "
                "folder with gt_counts.csv, or a folder of them)"
            )
        found.extend(children)
    return found


def _pooled_count_error(reports: list[dict[str, Any]], who: str | None) -> float | None:
    """``sum |pred - gt| / sum gt`` over every line of every sequence (``who``: None or peer)."""
    wrong = total = 0
    for report in reports:
        lines = report["lines"] if who is None else report[who]["lines"]
        for counts in lines.values():
            for direction in (IN, OUT):
                total += counts["gt"][direction]
                wrong += abs(counts["pred"][direction] - counts["gt"][direction])
    return round(wrong / total, 4) if total else None


def mean_row(reports: list[dict[str, Any]], who: str | None = None) -> dict[str, Any]:
    """The mean over MOT reports, ours (``who=None``) or the peer's (``who="peer"``)."""
    rows = [report if who is None else report[who] for report in reports]
    mean: dict[str, Any] = {
        key: round(sum(row[key] for row in rows) / len(rows), 4) for key in MEAN_KEYS
    }
    mean["id_switches"] = sum(row["id_switches"] for row in rows)
    mean["count_error"] = _pooled_count_error(reports, who)
    mean["sequences"] = len(rows)
    return mean

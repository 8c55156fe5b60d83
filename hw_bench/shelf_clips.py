"""What the shelf benchmarks share: where the labelled clips are, and the daemon's way of taking
their poses (``shelf_invariance.py``, ``shelf_inspect_grid.py``, ``shelf_labellers.py``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from intentcam.analytics.shelf import ShelfSettings
from intentcam.config import load_config
from intentcam.errors import UserError
from intentcam.evaluation.shelf import ClipPoses, matched_detected_labelled, pose_extractor, score
from intentcam.evaluation.shelf_labels import LabelledClip, load_labels
from intentcam.resources import project_file

CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "shelf"
#: Labelled clips, each with the poses the daemon takes of it.
Pairs = list[tuple[LabelledClip, ClipPoses]]


def add_clip_arguments(parser: argparse.ArgumentParser, json_help: str) -> None:
    """``--clips`` (the clips' folder), ``--labels`` (the folder of labels.json) and ``--json
    OUT`` (what the bench writes there: ``json_help``)."""
    parser.add_argument("--json", type=Path, metavar="OUT", help=json_help)
    parser.add_argument("--clips", type=Path, default=CLIPS,
                        help="the folder of the labelled shelf clips")  # fmt: skip
    parser.add_argument("--labels", type=Path, default=project_file("evaluation/shelf"),
                        help="folder of labels.json")  # fmt: skip


def clip_labels(clips: Path, labels: Path, prog: str) -> list[LabelledClip]:
    """The clips in ``clips`` with the labels of ``labels/labels.json``; a missing clips folder
    or bad labels end ``prog`` with a one-line error and exit status 2."""
    if not clips.is_dir():
        print(f"{prog}: {clips}: not a folder of clips", file=sys.stderr)
        raise SystemExit(2)
    try:
        return load_labels(labels, clips)
    except UserError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def shipped_settings() -> tuple[ShelfSettings, Callable[[LabelledClip], ClipPoses]]:
    """The shipped ``[shelf]`` thresholds and the pose taker (the models loaded)."""
    settings = load_config(None)
    return ShelfSettings.from_config(settings.shelf), pose_extractor(settings)


def labelled_clips(
    args: argparse.Namespace, prog: str
) -> tuple[ShelfSettings, list[LabelledClip], Callable[[LabelledClip], ClipPoses]]:
    """The shipped ``[shelf]`` thresholds, the clips of ``args`` with their labels, and the
    pose taker (:func:`clip_labels`, :func:`shipped_settings`)."""
    clips = clip_labels(args.clips, args.labels, prog)
    settings, poses_of = shipped_settings()
    return settings, clips, poses_of


def clips_with_poses(
    args: argparse.Namespace, prog: str
) -> tuple[ShelfSettings, Pairs, Callable[[LabelledClip], ClipPoses]]:
    """:func:`labelled_clips` with every clip's poses taken once (a progress bar per clip)."""
    settings, clips, poses_of = labelled_clips(args, prog)
    pairs = [(clip, poses_of(clip)) for clip in tqdm(clips, desc="poses", unit="clip", leave=False)]
    return settings, pairs, poses_of


def reach_row(
    labels: str, pairs: Pairs, settings: ShelfSettings, splits: tuple[str, ...] = ("tune", "test")
) -> dict[str, Any]:
    """One bench row: reach [matched, detected, labelled] per split of ``pairs`` (``all``: every
    clip) with ``settings``, and the test clips' false events per quiet minute."""
    results = {
        split: score([p for p in pairs if split == "all" or p[0].split == split], settings)
        for split in {*splits, "test"}
    }
    return {
        "labels": labels,
        **{split: matched_detected_labelled(results[split]) for split in splits},
        "test_false_per_quiet_minute": results["test"]["total"]["false_per_quiet_minute"],
    }

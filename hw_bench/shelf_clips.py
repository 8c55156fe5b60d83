"""What the shelf benchmarks share: where the labelled clips are, and the daemon's way of taking
their poses (``shelf_invariance.py``, ``shelf_inspect_grid.py``, ``shelf_labellers.py``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from intentcam.config import Settings, load_config
from intentcam.errors import UserError
from intentcam.evaluation.shelf import ClipPoses, pose_extractor
from intentcam.evaluation.shelf_labels import LabelledClip, load_labels
from intentcam.resources import project_file

CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "shelf"


def add_clip_arguments(parser: argparse.ArgumentParser) -> None:
    """``--clips`` (the clips' folder) and ``--labels`` (the folder of labels.json)."""
    parser.add_argument("--clips", type=Path, default=CLIPS,
                        help="the folder of the labelled shelf clips")  # fmt: skip
    parser.add_argument("--labels", type=Path, default=project_file("evaluation/shelf"),
                        help="folder of labels.json")  # fmt: skip


def labelled_clips(
    args: argparse.Namespace, prog: str
) -> tuple[Settings, list[LabelledClip], Callable[[LabelledClip], ClipPoses]]:
    """The default settings, the clips of ``args`` with their labels, and the pose taker; a
    missing clips folder or bad labels end ``prog`` with a one-line error and exit status 2."""
    if not args.clips.is_dir():
        print(f"{prog}: {args.clips}: not a folder of clips", file=sys.stderr)
        raise SystemExit(2)
    settings = load_config(None)
    try:
        clips = load_labels(args.labels, args.clips)
    except UserError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return settings, clips, pose_extractor(settings)

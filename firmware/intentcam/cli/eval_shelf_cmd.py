"""``intentcam eval-shelf DIR``: shelf interactions against the hand labels in evaluation/shelf."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from intentcam.cli.common import add_config_option, settings_from
from intentcam.errors import UserError
from intentcam.resources import project_file

NAME = "eval-shelf"
DEFAULT_LABELS = project_file("evaluation/shelf")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        NAME,
        help="measure reach / inspect / put-back detection against hand labels",
        description="Run the person detector, the tracker and MoveNet over the shelf clips in "
        "DIR (e.g. ../shared/data/shelf), choose the interaction thresholds on the clips labelled "
        "'tune' and report event-level precision and recall (start within 0.5 s) per kind on the "
        "'test' clips, with false events per minute of quiet video. Labels and their protocol: "
        "evaluation/shelf/; a labels.json in DIR itself is used first (a held-out set: clips "
        "without 'split' are test clips, and without tune clips the [shelf] thresholds of the "
        'config are scored). Polygons may be fractions of the frame or, with "coordinates": '
        '"pixels", pixels; events frame numbers (start, end) or seconds (start_s, end_s), '
        "optionally with the person they are of (person: not scored; --json repeats it on "
        "each of their labels, so a labeller sees whose reaches were missed).",
    )
    parser.add_argument("clips", type=Path, metavar="DIR", help="the folder of the labelled clips")
    parser.add_argument("--labels", type=Path, metavar="DIR",
                        help="folder of labels.json (default: DIR if it has one, else "
                        "evaluation/shelf)")  # fmt: skip
    parser.add_argument("--configured", action="store_true",
                        help="score the config's [shelf] thresholds instead of choosing them on "
                        "the tune clips")  # fmt: skip
    add_config_option(parser)
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the result as JSON (with every labelled and detected event)",
    )
    parser.add_argument("--timeline", type=Path, metavar="FILE",
                        help="also draw every clip's labelled and detected events on a time line "
                        "(.svg or .png; misses and false events in red; needs matplotlib, the "
                        "'eval' extra)")  # fmt: skip
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from intentcam.analytics.shelf import ShelfSettings
    from intentcam.evaluation.shelf import evaluate, pose_extractor
    from intentcam.evaluation.shelf_labels import load_labels
    from intentcam.evaluation.shelf_timeline import check_timeline_path, write_timeline

    settings = settings_from(args, {})
    if not args.clips.is_dir():
        raise UserError(f"{args.clips}: not a folder of clips", exit_code=2)
    if args.timeline:
        check_timeline_path(args.timeline)
    labels = args.labels or (
        args.clips if (args.clips / "labels.json").is_file() else DEFAULT_LABELS
    )
    clips = load_labels(labels, args.clips)
    # Frames, not clips: someone else's held-out clips may run for minutes each.
    frames = sum(clip.frames for clip in clips)
    bar = tqdm(total=frames or None, desc="frames", unit="frame", leave=False, disable=None)
    try:
        poses_of = pose_extractor(settings, on_frame=lambda: bar.update(1))
        result = evaluate(clips, poses_of, ShelfSettings.from_config(settings.shelf),
                          bar.set_postfix_str, tune=not args.configured)  # fmt: skip
    finally:
        bar.close()
    if args.timeline:
        write_timeline(result["all"]["clips"], args.timeline)
    if args.json:
        print(json.dumps(result))
        return 0
    where = ", ".join(result["tune"]["clips"]) or "the config"
    print(f"thresholds (from {where}): {result['settings']}")
    print(f"{'clip':32} {'split':5} {'reach m/d/l':>12} {'inspect':>9} {'put_back':>9} false")
    for row in result["all"]["clips"]:
        cells = ["/".join(map(str, row[kind])) for kind in ("reach", "inspect", "put_back")]
        print(f"{row['clip']:32} {row['split']:5} {cells[0]:>12} {cells[1]:>9} {cells[2]:>9} "
              f"{row['false_in_quiet']}")  # fmt: skip
    for kind, totals in result["test"]["total"].items():
        if isinstance(totals, dict):
            print(f"test {kind}: precision {totals['precision']} recall {totals['recall']} "
                  f"({totals['matched']}/{totals['detected']} detected, {totals['labelled']} "
                  "labelled)", file=sys.stdout)  # fmt: skip
    print(
        f"test false events per quiet minute: {result['test']['total']['false_per_quiet_minute']}"
    )
    if args.timeline:
        print(f"time line of every clip's events: {args.timeline}")
    return 0

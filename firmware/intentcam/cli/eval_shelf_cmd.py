"""``intentcam eval-shelf DIR``: shelf interactions against the hand labels in evaluation/shelf."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

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
    print(text_report(result))
    if args.timeline:
        print(f"time line of every clip's events: {args.timeline}")
    return 0


def text_report(result: dict[str, Any]) -> str:
    """``eval-shelf``'s result for reading: the thresholds, a row per clip, every test label
    that was not found (with whose, where labelled per person) and the test totals."""
    from intentcam.analytics.shelf import KINDS
    from intentcam.evaluation.shelf_labels import SOLE_SHELF

    where = ", ".join(result["tune"]["clips"]) or "the config"
    thresholds = ", ".join(f"{name} {value:g}" for name, value in result["settings"].items())
    lines = [
        f"thresholds (from {where}): {thresholds}",
        f"{'clip':32} {'split':5} {'reach':>8} {'inspect':>8} {'put_back':>8}  false in quiet",
    ]
    for row in result["all"]["clips"]:
        cells = ["/".join(map(str, row[kind])) for kind in KINDS]
        lines.append(f"{row['clip']:32} {row['split']:5} {cells[0]:>8} {cells[1]:>8} "
                     f"{cells[2]:>8}  {row['false_in_quiet']}")  # fmt: skip
    lines.append("(matched/detected/labelled; false in quiet: events where nothing was labelled)")
    missed = [
        f"  {row['clip']:32} {event['kind']:8} {event['start']:g}-{event['end']:g} s"
        + (f"  at {event['shelf']}" if event["shelf"] != SOLE_SHELF else "")
        + (f"  person {event['person']}" if "person" in event else "")
        for row in result["test"]["clips"]
        for event in row["events"]
        if event["source"] == "label" and not event["matched"]
    ]
    if missed:
        lines += ["test labels not found:", *missed]
    for kind in KINDS:
        total = result["test"]["total"][kind]
        precision = total["precision"] if total["detected"] else "n/a (nothing detected)"
        recall = total["recall"] if total["labelled"] else "n/a (nothing labelled)"
        lines.append(
            f"test {kind}: precision {precision}, recall {recall} ({total['matched']} of "
            f"{total['detected']} detected right, {total['matched']} of {total['labelled']} "
            "labelled found)"
        )
    quiet = result["test"]["total"]["false_per_quiet_minute"]
    lines.append(f"test false events per quiet minute: {'n/a' if quiet is None else quiet}")
    return "\n".join(lines)

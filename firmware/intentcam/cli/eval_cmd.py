"""``intentcam eval SEQ_DIR...``: tracking and counting accuracy against ground truth, beside a peer."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from intentcam.cli.common import add_config_option, nested, settings_from
from intentcam.errors import UserError

NAME = "eval"


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        NAME,
        help="measure tracking and counting accuracy on ground-truth sequences",
        description="Run a detector and our tracker over MOTChallenge-style sequence folders "
        "(seqinfo.ini whose imDir names the video, gt/gt.txt, optional lines.toml / zones.toml) "
        "and print MOTA, IDF1, HOTA, ID switches, recall, precision and per-line in/out counts "
        "against the ground truth, for our tracker and for Roboflow's trackers ByteTrack on the "
        "same detections: one row per sequence, then the mean. Counting folders (a video and "
        "gt_counts.csv, e.g. the Mall dataset) report people per frame against the true count.",
    )
    parser.add_argument(
        "sequences",
        type=Path,
        nargs="+",
        metavar="SEQ_DIR",
        help="sequence folders, or folders holding them (e.g. ../shared/data/mot)",
    )
    add_config_option(parser)
    parser.add_argument(
        "--detector", metavar="ID", help="person detector model id (default: detector.model)"
    )
    parser.add_argument(
        "--every",
        type=int,
        default=1,
        metavar="N",
        help="use every N-th frame (simulates a lower frame rate; default 1)",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the peer tracker")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: the report of a single sequence, or "
        '{"sequences": [...], "mean": {...}} for several',
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: `intentcam --help` and the other commands do not pay for them.
    from intentcam.detect import build_detector
    from intentcam.evaluation import Evaluation, detect_sequence, load_sequence
    from intentcam.evaluation.counting import evaluate_counting, load_counting
    from intentcam.evaluation.suite import discover, mean_row
    from intentcam.progress import progress_bar
    from intentcam.track.bytetrack import TrackerSettings
    from intentcam.track.sessions import RelinkSettings

    if args.every < 1:
        raise UserError("--every must be at least 1", exit_code=2)
    found = discover(args.sequences)
    settings = settings_from(args, nested(detector={"model": args.detector}))
    detector = build_detector(settings)
    tracking = TrackerSettings.from_config(settings.tracker, detector.operating_point)
    reports: list[dict[str, Any]] = []
    for kind, folder in found:
        if kind == "counting":
            reports.append(
                evaluate_counting(load_counting(folder), detector, args.every, progress_bar)
            )
            continue
        sequence = load_sequence(folder)
        detected = detect_sequence(sequence, detector, tracking.low_score, args.every, progress_bar)
        report = Evaluation(
            sequence,
            tracking,
            settings.analytics,
            args.every,
            peer=not args.no_peer,
            relink=RelinkSettings.from_config(settings.tracker),
        ).run(detected)
        reports.append({"kind": "mot", **report})
    tracked = [report for report in reports if report["kind"] == "mot"]
    mean: dict[str, Any] = {}
    if tracked:
        mean = mean_row(tracked)
        if not args.no_peer:
            mean["peer"] = mean_row(tracked, "peer")
    if args.json:
        if len(reports) == 1:
            print(json.dumps(reports[0]))
        else:
            print(
                json.dumps(
                    {"detector": detector.describe()["id"], "sequences": reports, "mean": mean}
                )
            )
        return 0
    print_table(detector.describe()["id"], reports, mean)
    return 0


def _row(name: str, values: dict[str, Any]) -> str:
    error = values["count_error"]
    return (
        f"{name:44} {values['mota']:7.3f} {values['idf1']:7.3f} {values['hota']:7.3f} "
        f"{values['id_switches']:5d} {values['recall']:7.3f} {values['precision']:7.3f} "
        f"{'-' if error is None else f'{error:.3f}':>9}"
    )


def print_table(detector: str, reports: list[dict[str, Any]], mean: dict[str, Any]) -> None:
    """One row per sequence and tracker, the mean, then counting folders and line counts."""
    print(f"detector {detector}")
    print(
        f"{'sequence / tracker':44} {'MOTA':>7} {'IDF1':>7} {'HOTA':>7} {'IDSW':>5} "
        f"{'recall':>7} {'prec':>7} {'count err':>9}"
    )
    for report in (r for r in reports if r["kind"] == "mot"):
        label = f"{report['sequence']} ({report['frames']} fr, {report['fps_sequence']:g} fps)"
        print(_row(f"{label[:34]} ours", report))
        if "peer" in report:
            print(_row(f"{label[:34]} peer", report["peer"]))
    if mean:
        print(_row(f"mean of {mean['sequences']} ours", mean))
        if "peer" in mean:
            print(_row(f"mean of {mean['sequences']} peer", mean["peer"]))
    for report in (r for r in reports if r["kind"] == "counting"):
        print(
            f"{report['sequence']}: {report['frames']} frames, people per frame "
            f"{report['pred_mean']:.2f} found vs {report['gt_mean']:.2f} true "
            f"(ratio {report['ratio']}, MAE {report['mae']:.2f})"
        )
    for report in (r for r in reports if r["kind"] == "mot"):
        for line, counts in report["lines"].items():
            peer = report.get("peer", {}).get("lines", {}).get(line, {}).get("pred")
            print(
                f"{report['sequence']} line {line}: gt in {counts['gt']['in']} out "
                f"{counts['gt']['out']} | ours in {counts['pred']['in']} out "
                f"{counts['pred']['out']}"
                + (f" | peer in {peer['in']} out {peer['out']}" if peer else "")
            )

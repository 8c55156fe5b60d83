"""``intentcam eval SEQ_DIR``: tracking accuracy and line counts against ground truth, beside a peer."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from intentcam.cli.common import add_config_option, settings_from
from intentcam.detect import build_detector
from intentcam.errors import UserError
from intentcam.evaluation import Evaluation, detect_sequence, load_sequence
from intentcam.progress import progress_bar
from intentcam.track.bytetrack import TrackerSettings

NAME = "eval"


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        NAME,
        help="measure tracking and counting accuracy on a ground-truth sequence",
        description="Run the configured detector and tracker over a MOTChallenge-style sequence "
        "folder (seqinfo.ini whose imDir names the video, gt/gt.txt, optional "
        "lines.toml / zones.toml) and print MOTA, IDF1, HOTA, ID switches, recall, "
        "precision and per-line in/out counts against the ground truth, for our "
        "tracker and for Roboflow's trackers ByteTrack on the same detections.",
    )
    parser.add_argument("sequence", type=Path, metavar="SEQ_DIR", help="sequence folder")
    add_config_option(parser)
    parser.add_argument(
        "--every",
        type=int,
        default=1,
        metavar="N",
        help="use every N-th frame (simulates a lower frame rate; default 1)",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the peer tracker")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.every < 1:
        raise UserError("--every must be at least 1", exit_code=2)
    sequence = load_sequence(args.sequence)
    settings = settings_from(args)
    tracking = TrackerSettings.from_config(settings.tracker)
    detector = build_detector(settings)
    detected = detect_sequence(sequence, detector, tracking.low_score, args.every, progress_bar)
    report = Evaluation(
        sequence, tracking, settings.analytics, args.every, peer=not args.no_peer
    ).run(detected)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['sequence']}: {report['frames']} frames at {report['fps_sequence']:g} fps")
    rows = [("intentcam", report)] + (
        [("peer (trackers ByteTrack)", report["peer"])] if "peer" in report else []
    )
    print(
        f"{'tracker':28} {'MOTA':>7} {'IDF1':>7} {'HOTA':>7} {'IDSW':>5} {'recall':>7} "
        f"{'prec':>7} {'count err':>9} {'fps':>7}"
    )
    for name, values in rows:
        error = values["count_error"]
        print(
            f"{name:28} {values['mota']:7.3f} {values['idf1']:7.3f} {values['hota']:7.3f} "
            f"{values['id_switches']:5d} {values['recall']:7.3f} {values['precision']:7.3f} "
            f"{'-' if error is None else f'{error:.3f}':>9} {values['fps']:7.1f}"
        )
    for line, counts in report["lines"].items():
        peer = report.get("peer", {}).get("lines", {}).get(line, {}).get("pred")
        print(
            f"line {line}: gt in {counts['gt']['in']} out {counts['gt']['out']} | ours in "
            f"{counts['pred']['in']} out {counts['pred']['out']}"
            + (f" | peer in {peer['in']} out {peer['out']}" if peer else "")
        )
    return 0

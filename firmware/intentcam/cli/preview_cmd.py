"""``intentcam preview``: the privacy-safe picture an installer draws the door line on."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from intentcam.cli.common import add_config_option, nested, settings_from
from intentcam.errors import UserError

NAME = "preview"


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        NAME,
        help="write a privacy-safe view of the scene with the lines and zones drawn on it",
        description="Watch the camera (or --source) for --seconds and write a PNG: the "
        "background plate (the per-pixel median of the frames, so passers-by vanish; anyone "
        "the detector still finds on it is pixelated and blurred), a 0.1 grid with "
        "coordinates, the configured zones and lines with their ids, each line's arrow "
        "pointing in (in_side), and the foot-point trails of the people tracked meanwhile. "
        "Only this command writes an image; the daemon never does.",
    )
    add_config_option(parser)
    parser.add_argument("--source", metavar="S", help="override camera.source")
    parser.add_argument("--seconds", type=float, default=10.0, metavar="N",
                        help="how long to watch (default 10; clip time for files)")  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, metavar="PNG", help="the picture")
    parser.add_argument(
        "--plate",
        type=Path,
        metavar="PNG",
        help="also write the bare plate (blurred, nothing drawn): the background `intentcam "
        "report` draws this camera's heatmap on",
    )
    parser.add_argument("--json", action="store_true", help="print what was done as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: `intentcam --help` and the other commands do not pay for them.
    import cv2
    from tqdm import tqdm

    from intentcam.capture import open_source
    from intentcam.detect import build_detector
    from intentcam.preview import build_preview, refuse_as_a_service

    refuse_as_a_service()  # before anything: not even the camera is opened

    if not 1 <= args.seconds <= 600:
        raise UserError("--seconds must be between 1 and 600", exit_code=2)
    for option, path in (("--out", args.out), ("--plate", args.plate)):
        if path is not None and path.suffix.lower() != ".png":
            raise UserError(f"{option} {path}: expected a .png file name", exit_code=2)
    settings = settings_from(args, nested(camera={"source": args.source}))
    detector = build_detector(settings)
    source = open_source(settings.camera)
    bar = tqdm(total=round(args.seconds), desc="watching", unit="s", leave=False, disable=None)

    def tick(elapsed: float) -> None:
        bar.update(max(int(elapsed) - bar.n, 0))

    try:
        preview = build_preview(settings, source, detector, args.seconds, tick)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    finally:
        bar.close()
        source.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.out), preview.image):
        raise UserError(f"--out {args.out}: cannot write the picture")
    if args.plate is not None:
        args.plate.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(args.plate), preview.plate):
            raise UserError(f"--plate {args.plate}: cannot write the picture")
    report = {
        "out": str(args.out),
        "plate": str(args.plate) if args.plate else None,
        "frames": preview.frames,
        "plate_samples": preview.samples,
        "people_blurred": preview.blurred,
        "trails": preview.trails,
        "lines": [line.id for line in settings.lines],
        "zones": [zone.id for zone in settings.zones],
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"intentcam preview: {args.out} from {preview.frames} frames "
            f"({preview.samples} in the plate), {preview.trails} trail(s), "
            f"{preview.blurred} still person(s) blurred",
            file=sys.stderr,
        )
    return 0

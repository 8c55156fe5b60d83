"""``intentcam run``: the daemon's main loop."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from intentcam.cli.common import add_config_option, nested, settings_from
from intentcam.config import Settings, with_sections
from intentcam.errors import UserError

NAME = "run"
log = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        NAME,
        help="run the camera loop",
        description="Read frames from the configured camera (or --source), detect people and "
        "track them under anonymous session tokens and write the analytics records "
        "(counts, sessions, heatmap per window) to the sink. Progress (frames, fps, "
        "people per frame) is logged at an interval. Ctrl-C or SIGTERM stops cleanly "
        "and flushes the partial window.",
    )
    add_config_option(parser)
    parser.add_argument(
        "--source",
        metavar="S",
        help="override camera.source: video file, image folder, /dev/videoN, "
        "rtsp://... or http://... URL, picamera2",
    )
    parser.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    parser.add_argument(
        "--sink",
        default="stdout",
        metavar="stdout|jsonl:PATH|none",
        help="where records go (default: stdout, JSON lines)",
    )
    parser.add_argument(
        "--frames",
        action="store_true",
        help="also write one record per frame (boxes and track ids)",
    )
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="play file sources at their own frame rate instead of as fast as possible",
    )
    parser.add_argument(
        "--report-every",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="progress report interval (default 5)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the final summary as JSON on stdout"
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="state dir (spool, live zones, OTA store) for this run. A run on a recording (video "
        "file, image folder) whose config names no state dir uses a throwaway one and does not "
        "publish, so it never mixes into the device's own spool or telemetry",
    )
    parser.set_defaults(handler=run)


def rehearsal(settings: Settings) -> Settings | None:
    """Settings for a run on a recording with no state dir of its own: a throwaway state dir
    (the models stay where they are) and no broker. ``None`` when the run is the device's."""
    from intentcam.capture import detect_kind

    kind: str = settings.camera.kind
    if kind == "auto":
        try:
            kind = detect_kind(settings.camera.source)
        except UserError:
            return None  # opening the source says what is wrong with it
    if kind not in ("file", "images") or "state_dir" in settings.paths.model_fields_set:
        return None
    scratch = Path(tempfile.mkdtemp(prefix="intentcam-recording-"))
    paths = {"state_dir": scratch, "model_dir": settings.paths.models}
    return with_sections(settings, paths=paths, mqtt={"host": None})


def install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM and the first Ctrl-C ask the loop to stop; a second Ctrl-C interrupts at once."""

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


def run(args: argparse.Namespace) -> int:
    # Imported here: `intentcam --help` and the other commands do not pay for them.
    from intentcam.daemon import run_daemon
    from intentcam.sinks import open_sink
    from intentcam.telemetry.health import peak_rss_mb

    if args.max_frames is not None and args.max_frames < 1:
        raise UserError("--max-frames must be at least 1", exit_code=2)
    if args.report_every <= 0:
        raise UserError("--report-every must be positive", exit_code=2)
    overrides = nested(
        camera={"source": args.source, "pace": "realtime" if args.realtime else None},
        paths={"state_dir": str(args.state_dir) if args.state_dir else None},
    )
    settings = settings_from(args, overrides)
    scratch = rehearsal(settings)
    if scratch is not None:
        log.warning(
            "%s is a recording: this run uses the throwaway state dir %s and publishes nothing, "
            "so the device's spool and telemetry stay its own (--state-dir DIR to choose)",
            settings.camera.source,
            scratch.paths.state_dir,
        )
        settings = scratch
    if args.sink == "stdout" and args.json:
        raise UserError(
            "--json prints the summary on stdout; use --sink jsonl:PATH or none with it",
            exit_code=2,
        )
    sink = open_sink(args.sink)
    stop = threading.Event()
    install_stop_handlers(stop)
    try:
        summary = run_daemon(
            settings,
            sink,
            stop,
            config_path=args.config,
            overrides=overrides,
            max_frames=args.max_frames,
            report_every_s=args.report_every,
            frame_records=args.frames,
        )
    finally:
        if scratch is not None:  # its records went to the sink; the spool copy is not needed
            shutil.rmtree(scratch.paths.state_dir, ignore_errors=True)
            log.info(
                "removed the throwaway state dir %s (its records went to the sink)",
                scratch.paths.state_dir,
            )
    if summary["frames"] == 0 and summary["source_state"] in ("ended", "finished", "failed"):
        raise UserError(
            f"{settings.camera.source}: no readable frame (not a video, or images that do not decode)"
        )
    summary["peak_rss_mb"] = peak_rss_mb()
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"intentcam: {summary['frames']} frames in {summary['elapsed_s']:.1f} s "
            f"({summary['fps']:.1f} fps), {summary['people_per_frame']:.2f} people/frame, "
            f"{summary['dropped']} dropped, peak RSS {summary['peak_rss_mb']} MB",
            file=sys.stderr,
        )
    return 0

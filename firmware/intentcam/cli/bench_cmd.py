"""``intentcam bench``: detector-only vs pipeline throughput, stages, memory, and a peer."""

from __future__ import annotations

import argparse
from pathlib import Path

from intentcam.cli.common import add_config_option, nested, settings_from
from intentcam.errors import UserError
from intentcam.resources import CHECKOUT_ROOT

NAME = "bench"
#: The workplace's sample clip beside a source checkout (``../shared/data``).
DEFAULT_CLIP = CHECKOUT_ROOT.parent / "shared" / "data" / "concourse_overhead.avi"


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        NAME,
        help="measure throughput, per-stage timings and memory on a clip",
        description="Measure, in one run on one clip: detector-only throughput, the full "
        "pipeline's throughput and their ratio, the pipeline with the motion gate, "
        "a peer pipeline (trackers ByteTrack + supervision LineZone), per-stage "
        "p50/p95, CPU, peak RSS, start-up time and detector fps per thread count. "
        "See hw_bench/README.md.",
    )
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="video file")
    parser.add_argument("--frames", type=int, default=200, metavar="N", help="frames (default 200)")
    parser.add_argument("--threads", type=int, metavar="N", help="inference threads")
    parser.add_argument(
        "--compare-threads",
        default="1,2",
        metavar="LIST",
        help="thread counts for the detector-only comparison (default 1,2)",
    )
    parser.add_argument("--tiling", choices=["1x1", "2x1", "2x2", "auto"])
    add_config_option(parser)
    parser.add_argument("--no-peer", action="store_true", help="skip the peer pipeline")
    parser.add_argument(
        "--compare-detector",
        action="append",
        default=[],
        metavar="ID",
        help="also run the pipeline with this detector model (repeatable); best of two "
        "alternating rounds each, in the JSON under compare.<id>",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the result as JSON")
    parser.add_argument("--markdown", type=Path, metavar="OUT", help="write the Markdown table")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from intentcam.memory_bench import daemon_memory, evict_libraries, site_folders

    if args.frames < 2:
        raise UserError("--frames must be at least 2", exit_code=2)
    try:
        threads = [int(n) for n in args.compare_threads.split(",") if n.strip()]
    except ValueError:
        raise UserError(
            f"--compare-threads {args.compare_threads!r}: expected e.g. 1,2,4", exit_code=2
        ) from None
    settings = settings_from(
        args, nested(detector={"threads": args.threads, "tiling": args.tiling})
    )
    if not args.clip.is_file():
        raise UserError(f"--clip {args.clip}: not found")
    # First, before this process maps any library: see intentcam.memory_bench.
    evict_libraries(site_folders())
    daemon = daemon_memory(settings, args.clip, args.frames)
    # Imported only now (and not at the top: `intentcam --help` does not pay for them either).
    from intentcam.benchmark import markdown, run_benchmark, write_report
    from intentcam.models import load_manifest
    from intentcam.progress import progress_bar

    manifest = load_manifest(settings.paths.manifest)
    for model_id in args.compare_detector:
        if manifest.get(model_id).role != "person_detector":
            raise UserError(f"--compare-detector {model_id}: not a person detector", exit_code=2)
    result = run_benchmark(
        settings,
        args.clip,
        args.frames,
        threads=threads,
        peer=not args.no_peer,
        compare=args.compare_detector,
        progress=progress_bar,
    )
    result.update(daemon)
    table = markdown(result)
    print(table)
    write_report(result, args.json, table, args.markdown)
    return 0

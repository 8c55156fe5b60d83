"""The ``intentcam`` command: one sub-command per job, each with ``--help``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from intentcam import __version__
from intentcam.cli import (
    bench_cmd,
    calibrate_cmd,
    check_cmd,
    detect_cmd,
    enroll_cmd,
    eval_cmd,
    eval_shelf_cmd,
    faces_cmd,
    fleet_cmd,
    import_cmd,
    models_cmd,
    ota_cmd,
    preview_cmd,
    report_cmd,
    run_cmd,
    send_cmd,
    tail_cmd,
)
from intentcam.errors import UserError

log = logging.getLogger("intentcam")

COMMANDS = (
    run_cmd,
    check_cmd,
    preview_cmd,
    calibrate_cmd,
    detect_cmd,
    faces_cmd,
    eval_cmd,
    eval_shelf_cmd,
    tail_cmd,
    report_cmd,
    fleet_cmd,
    send_cmd,
    bench_cmd,
    models_cmd,
    enroll_cmd,
    import_cmd,
    ota_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="intentcam",
        description="Retail smart-camera daemon: people detection, anonymous tracking and store "
        "analytics at the edge.",
        epilog="Configuration: a TOML file (default /etc/intentcam/intentcam.toml, --config to "
        "override) under INTENTCAM_* environment variables, e.g. "
        "INTENTCAM_DETECTOR__THREADS=2. See config/intentcam.example.toml.",
    )
    parser.add_argument("--version", action="version", version=f"intentcam {__version__}")
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity (default: logging.level from the config, INFO)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(commands)
    return parser


def configure_logging(level: str) -> None:
    from intentcam.service.logs import configure

    configure(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level or "WARNING")
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"intentcam: error: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("intentcam: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0

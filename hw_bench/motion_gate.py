"""Motion gating: detector invocations saved, and counts identical with the gate on and off.

Usage (from the repository root, after `make setup`):

    .venv/bin/python hw_bench/motion_gate.py [--clip PATH] [--frames N] [--json OUT]

Defaults to the Intel "one by one" clip (long empty stretches) with the line and zone of
hw_bench/configs/intel_one_by_one.toml.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from intentcam.benchmark import compare_gating, write_report
from intentcam.config import load_config
from intentcam.progress import progress_bar

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT.parent / "shared" / "data" / "videos" / "intel_one_by_one_person_detection.mp4"
CONFIG = ROOT / "hw_bench" / "configs" / "intel_one_by_one.toml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--config", type=Path, default=CONFIG, help="lines and zones")
    parser.add_argument("--frames", type=int, default=100_000, help="at most this many frames")
    parser.add_argument("--json", type=Path, metavar="OUT")
    args = parser.parse_args()
    settings = load_config(args.config)
    report = compare_gating(settings, args.clip, args.frames, progress_bar)
    for name in ("off", "on"):
        row = report[name]
        print(
            f"gate {name:3}: {row['frames']} frames, {row['invokes']} detector invocations, "
            f"{row['gated_frames']} frames skipped, {row['fps']} fps; lines {row['lines']}; "
            f"zones {row['zones']}"
        )
    print(
        f"invocations saved: {report['invokes_saved']:.1%}; counts identical: "
        f"{report['identical_counts']}"
    )
    write_report(report, args.json)
    return 0 if report["identical_counts"] else 1


if __name__ == "__main__":
    sys.exit(main())

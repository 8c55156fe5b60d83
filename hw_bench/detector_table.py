"""The side-by-side detector table of the README: accuracy on every shared sequence, speed, memory.

Usage (from the repository root, after `make setup`):

    .venv/bin/python hw_bench/detector_table.py [--frames 150] [--json OUT] [--markdown OUT]

For each person detector of the manifest, in a process of its own (so its peak RSS is its own):
`intentcam eval` over ``../shared/data/mot`` and the Mall counts (mean IDF1, MOTA, line count
error, Mall people per frame against the truth), then the daemon's pipeline on the concourse clip
(auto tiling, motion gate off): frames per second, invokes per frame, invoke p50 and peak RSS.
Speeds are reported as ratios to SSD v1's pipeline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from intentcam.benchmark import write_report

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CLIP = DATA / "concourse_overhead.avi"
BASELINE = "ssd_mobilenet_v1_coco_quant"

SPEED = """
import json, sys, tempfile
from pathlib import Path
from intentcam.benchmark import peak_rss_mb, pipeline_run
from intentcam.config import load_config
settings = load_config(None, overrides={"detector": {"model": sys.argv[1]}})
run = pipeline_run(settings, Path(sys.argv[2]), int(sys.argv[3]), False, lambda i, n, l: i)
print(json.dumps({"pipeline_fps": round(run["fps"], 2),
                  "invokes_per_frame": round(run["invokes"] / max(run["frames"], 1), 2),
                  "invoke_ms_p50": run["stages"]["invoke"]["p50"],
                  "rss_peak_mb": peak_rss_mb()}))
"""


def _run(args: list[str]) -> dict[str, Any]:
    result = subprocess.run(args, capture_output=True, text=True, check=False, env=os.environ)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args[:4])}: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(model_id: str, frames: int) -> dict[str, Any]:
    python = sys.executable
    accuracy = _run(
        [
            python,
            "-m",
            "intentcam",
            "eval",
            str(DATA / "mot"),
            str(DATA / "counting" / "mall_dataset"),
            "--detector",
            model_id,
            "--json",
        ]
    )
    mall = next(s for s in accuracy["sequences"] if s["kind"] == "counting")
    speed = _run([python, "-c", SPEED, model_id, str(CLIP), str(frames)])
    mean = accuracy["mean"]
    return {
        "detector": model_id,
        "idf1": mean["idf1"],
        "mota": mean["mota"],
        "count_error": mean["count_error"],
        "recall": mean["recall"],
        "precision": mean["precision"],
        "peer_idf1": mean.get("peer", {}).get("idf1"),
        "mall_people_ratio": mall["ratio"],
        "sequences": {
            s["sequence"]: {k: s.get(k) for k in ("idf1", "mota", "count_error")}
            for s in accuracy["sequences"]
            if s["kind"] == "mot"
        },
        **speed,
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    base = next((r for r in rows if r["detector"] == BASELINE), rows[0])
    lines = [
        "| detector | IDF1 | MOTA | count error | Mall found/true | pipeline fps | x SSD v1 "
        "| invokes/frame | invoke p50 ms | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['detector']} | {r['idf1']:.3f} | {r['mota']:.3f} | {r['count_error']} | "
            f"{r['mall_people_ratio']} | {r['pipeline_fps']} | "
            f"{r['pipeline_fps'] / base['pipeline_fps']:.2f} | {r['invokes_per_frame']} | "
            f"{r['invoke_ms_p50']} | {r['rss_peak_mb']} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=150, help="concourse frames (default 150)")
    parser.add_argument("--detector", action="append", help="only these ids (repeatable)")
    parser.add_argument("--json", type=Path, metavar="OUT")
    parser.add_argument("--markdown", type=Path, metavar="OUT")
    args = parser.parse_args()
    from intentcam.models import load_manifest

    ids = args.detector or [s.id for s in load_manifest().models if s.role == "person_detector"]
    rows = [measure(model_id, args.frames) for model_id in tqdm(ids, disable=None)]
    table = markdown(rows)
    print(table)
    write_report(rows, args.json, table, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``make demo-ota``: build, sign and hot-swap a model bundle into a daemon running on a clip.

1. a signing key (``intentcam-ota keygen``) and a bundle of SSD MobileNet v2 with two reference
   frames (``intentcam-ota build``);
2. the daemon on the clip (paced like a live camera), writing its records to a JSON-lines file;
3. ``intentcam ota install`` hands the bundle to the running daemon, which verifies, self-tests,
   swaps the model between two frames and commits it after probation;
4. the state transitions, the swap pause and the ``seq`` continuity, printed from the records.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from intentcam.config import load_config

PYTHON = sys.executable


def run(*argv: str, env: dict[str, str]) -> None:
    print("$", " ".join(argv), flush=True)
    subprocess.run(argv, env=env, check=True)


def wait_for(path: Path, kind: str, timeout: float, state: str | None = None) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                if record.get("type") == kind and (state is None or record.get("state") == state):
                    return record
        time.sleep(0.5)
    raise SystemExit(f"demo-ota: no {kind} {state or ''} record within {timeout:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument(
        "--shared", type=Path, required=True, help="the shared folder (models, data)"
    )
    parser.add_argument("--out", type=Path, default=Path("demo-out/ota"))
    args = parser.parse_args()
    model_dir = load_config().paths.models  # where `make models` put the packaged models
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTENTCAM_")}
    env.update(
        INTENTCAM_PATHS__STATE_DIR=str(args.out / "state"),
        INTENTCAM_PATHS__MODEL_DIR=str(model_dir),
        INTENTCAM_OTA__TRUSTED_KEYS_DIR=str(args.out / "keys"),
        INTENTCAM_OTA__PROBATION_S="5",
        INTENTCAM_ANALYTICS__WINDOW_S="2",
    )
    ota = [PYTHON, "-m", "intentcam_ota"]
    run(*ota, "keygen", "--out", str(args.out / "keys"), env=env)
    bundle = args.out / "ssd_v2-1.0.0.swu"
    data = args.shared / "data"
    run(
        *ota, "build",
        "--model", str(args.shared / "models" / "mobilenet_ssd_v2_coco_quant_postprocess.tflite"),
        "--id", "ssd_mobilenet_v2_coco_quant", "--version", "1.0.0", "--serial", "1",
        "--key", str(args.out / "keys" / "ota.key"), "--out", str(bundle),
        "--frames", str(data / "kite_and_cold.jpg"), str(data / "grace_hopper.bmp"),
        env=env,
    )  # fmt: skip
    records = args.out / "records.jsonl"
    daemon_argv = [PYTHON, "-m", "intentcam", "run", "--source", str(args.clip), "--realtime",
                   "--sink", f"jsonl:{records}"]  # fmt: skip
    print("$", " ".join(daemon_argv), "&", flush=True)
    daemon = subprocess.Popen(daemon_argv, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_for(records, "counts", 90)
        run(PYTHON, "-m", "intentcam", "ota", "install", str(bundle), env=env)
        wait_for(records, "counts", 30)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    lines = [json.loads(line) for line in records.read_text(encoding="utf-8").splitlines()]
    print("\nstate transitions (retained ota topic):")
    for record in (r for r in lines if r.get("type") == "ota"):
        current = record.get("current") or {}
        extra = {k: record[k] for k in ("swap_ms", "frames_skipped", "reason") if k in record}
        print(f"  {record['ts']}  {record['state']:12} current={current.get('version', 'packaged')}"
              f"  {json.dumps(extra) if extra else ''}")  # fmt: skip
    seqs = sorted(r["seq"] for r in lines if r.get("type") in ("counts", "heatmap", "sessions"))
    gaps = [b for a, b in zip(seqs, seqs[1:]) if b != a + 1]
    ota_states = [r for r in lines if r.get("type") == "ota"]
    before, after = (r.get("current") or {"id": "packaged", "version": "-"}
                     for r in (ota_states[0], ota_states[-1]))  # fmt: skip
    print(f"\nseq {seqs[0]}..{seqs[-1]}: {'no gap' if not gaps else f'gaps at {gaps}'}")
    print(
        f"model before: {before['id']} {before['version']}; after: {after['id']} {after['version']}"
    )
    print(f"records: {records}")
    return 0 if not gaps and after["version"] == "1.0.0" else 1


if __name__ == "__main__":
    sys.exit(main())

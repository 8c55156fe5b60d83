"""``intentcam run``: the loop on real clips, its records, and clean stops."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from intentcam.capture import VideoFileSource
from intentcam.config import load_config
from intentcam.detect import SsdPersonDetector
from intentcam.pipeline import build_pipeline
from tests.cli import intentcam_argv, run_cli
from tests.data import CONCOURSE, MALL


class ListSink:
    def __init__(self) -> None:
        self.records: list[dict] = []

    def write(self, record: dict, line: str | None = None) -> None:
        self.records.append(record)

    def close(self) -> None:
        return None


@pytest.mark.slow
def test_run_writes_readable_jsonl_records(tmp_path: Path, config_file) -> None:
    out = tmp_path / "out.jsonl"
    result = run_cli(
        "run",
        "--config",
        str(config_file()),
        "--source",
        str(CONCOURSE),
        "--max-frames",
        "100",
        "--sink",
        f"jsonl:{out}",
        "--report-every",
        "0.5",
        "--frames",
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    frames = [r for r in records if r["type"] == "frame"]
    assert [r["frame"] for r in frames] == list(range(100))
    assert all(len(r["boxes"]) == len(r["scores"]) for r in frames)
    assert all(len(r["tracks"]) == len(r["track_boxes"]) for r in frames)
    assert sum(len(r["tracks"]) for r in frames) / 100 > 5  # a busy concourse, tracked
    assert all(0 <= v <= 1 for r in frames for box in r["boxes"] for v in box)
    # The run ended mid-window: the partial window was flushed, not lost. (Windows follow the
    # wall clock: a run that starts a few seconds before a minute boundary closes one more.)
    counts = [r for r in records if r["type"] == "counts"]
    assert 1 <= len(counts) <= 2 and counts[-1]["partial"]
    assert sum(c["frames"] for c in counts) == 100
    assert [r["type"] for r in records if r["type"] in ("counts", "heatmap")][-1] == "heatmap"
    summary = records[-1]
    assert summary["type"] == "summary" and summary["frames"] == 100 and summary["fps"] > 0
    assert any(r["type"] == "progress" for r in records)
    assert "100 frames" in result.stderr and "people/frame" in result.stderr


def test_run_bad_source_and_bad_flags_are_one_line_errors(tmp_path: Path, config_file) -> None:
    config = str(config_file())
    missing = run_cli("run", "--config", config, "--source", str(tmp_path / "none.mp4"))
    assert missing.returncode == 1 and "camera.source" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad_sink = run_cli("run", "--config", config, "--source", str(CONCOURSE), "--sink", "kafka")
    assert bad_sink.returncode == 2 and "--sink" in bad_sink.stderr


@pytest.mark.slow
def test_sigterm_stops_cleanly_with_a_summary(tmp_path: Path, config_file) -> None:
    out = tmp_path / "out.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTENTCAM_")}
    # --realtime paces the 2 fps Mall clip: 400 frames would take over three minutes.
    process = subprocess.Popen(
        intentcam_argv(
            "run",
            "--config",
            str(config_file()),
            "--source",
            str(MALL),
            "--realtime",
            "--sink",
            f"jsonl:{out}",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if out.exists() and out.read_text(encoding="utf-8").count("\n") >= 3:
                break
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert records[-1]["type"] == "summary"
    assert 3 <= records[-1]["frames"] < 400


def test_pipeline_stops_on_request_and_counts_invokes(detector: SsdPersonDetector) -> None:
    source = VideoFileSource(MALL)
    sink = ListSink()
    stop = threading.Event()
    settings = load_config(None)
    pipeline = build_pipeline(
        settings,
        source,
        sink,
        detector=detector,
        gated=False,
        report_every_s=3600,
        frame_records=True,
    )
    original_write = sink.write

    def stop_after_five(record: dict) -> None:
        original_write(record)
        if record["type"] == "frame" and record["frame"] == 4:
            stop.set()

    sink.write = stop_after_five  # type: ignore[method-assign]
    summary = pipeline.run(stop)
    source.close()
    assert summary["frames"] == 5
    assert pipeline.heartbeat.frames == 5 and pipeline.heartbeat.last_progress > 0
    layout, rects = detector.layout_for(640, 480)
    assert summary["invokes"] == 5 * len(rects)


def test_a_recording_never_writes_into_the_device_spool(tmp_path: Path, model_dir: Path) -> None:
    """A run on a clip with no state dir in its config must not touch the device's state dir
    (here a stand-in for /var/lib/intentcam); ``--state-dir`` makes it use one."""
    device_state = tmp_path / "device-state"
    env = {"HOME": str(tmp_path), "XDG_STATE_HOME": str(device_state), "STATE_DIRECTORY": str(device_state),
           "INTENTCAM_PATHS__MODEL_DIR": str(model_dir)}  # fmt: skip
    result = run_cli("run", "--source", str(CONCOURSE), "--max-frames", "3", "--sink", "none",
                     env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "is a recording" in result.stderr and "publishes nothing" in result.stderr
    assert not (device_state / "spool.sqlite").exists()
    throwaway = re.search(r"uses the throwaway state dir (\S+) and", result.stderr)
    assert throwaway is not None and not Path(throwaway[1]).exists()
    assert f"removed the throwaway state dir {throwaway[1]}" in result.stderr
    chosen = tmp_path / "chosen"
    kept = run_cli("run", "--source", str(CONCOURSE), "--max-frames", "3", "--sink", "none",
                   "--state-dir", str(chosen), env=env)  # fmt: skip
    assert kept.returncode == 0, kept.stderr
    assert (chosen / "spool.sqlite").exists() and "is a recording" not in kept.stderr

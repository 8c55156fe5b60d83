"""Motion gating and the benchmark harness (smoke only: no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from intentcam.benchmark import compare_gating
from intentcam.config import MotionGateConfig, load_config
from intentcam.scheduler import MotionGate, MotionGateSettings
from tests.cli import run_cli
from tests.data import CONCOURSE, DATA, ROOT

INTEL = DATA / "videos" / "intel_one_by_one_person_detection.mp4"
KEYS = {
    "detector_fps",
    "pipeline_fps",
    "ratio",
    "peer_fps",
    "stages",
    "rss_peak_mb",
    "daemon_rss_peak_mb",
    "startup_s",
    "threads",
    "clip",
}


def test_gate_skips_still_frames_and_opens_for_change_and_tracks() -> None:
    gate = MotionGate(
        MotionGateSettings.from_config(MotionGateConfig(recheck_s=2.0, max_skip_s=10.0))
    )
    still = np.full((360, 640, 3), 120, np.uint8)
    assert gate.should_detect(still, 0.0, tracks_present=False, tracks_moving=False)
    gate.detected(0.0)
    assert not gate.should_detect(still, 0.1, tracks_present=False, tracks_moving=False)
    noisy = np.clip(
        still.astype(int) + np.random.default_rng(0).normal(0, 3, still.shape), 0, 255
    ).astype(np.uint8)
    assert not gate.should_detect(noisy, 0.2, tracks_present=False, tracks_moving=False)
    person = still.copy()
    cv2.rectangle(person, (300, 100), (340, 300), (30, 30, 30), -1)
    assert gate.should_detect(person, 0.3, tracks_present=False, tracks_moving=False)
    gate.detected(0.3)
    assert gate.should_detect(person, 0.4, tracks_present=True, tracks_moving=True)
    assert not gate.should_detect(person, 0.5, tracks_present=True, tracks_moving=False)
    assert gate.should_detect(  # a still person at a shelf: their hands need every frame
        person, 0.55, tracks_present=True, tracks_moving=False, people_at_shelves=True
    )
    assert gate.should_detect(  # someone just detected: confirmed on consecutive frames
        person, 0.6, tracks_present=True, tracks_moving=False, tracks_starting=True
    )
    assert gate.should_detect(person, 2.5, tracks_present=True, tracks_moving=False)  # recheck
    gate.detected(2.5)
    assert gate.should_detect(person, 12.6, tracks_present=False, tracks_moving=False)  # safety
    assert gate.skipped == 3


@pytest.mark.slow
def test_gating_saves_invocations_and_keeps_counts_identical(model_dir: Path) -> None:
    settings = load_config(
        ROOT / "hw_bench" / "configs" / "intel_one_by_one.toml",
        overrides={"paths": {"model_dir": str(model_dir)}, "detector": {"tiling": "1x1"}},
    )
    report = compare_gating(settings, INTEL, 460)  # two people come, stay and leave
    assert report["off"]["zones"]["table"]["entries"] >= 1
    assert report["identical_counts"], report
    assert report["invokes_saved"] > 0.3


@pytest.mark.slow
def test_bench_writes_the_documented_keys(tmp_path: Path, config_file) -> None:
    out = tmp_path / "bench.json"
    table = tmp_path / "bench.md"
    result = run_cli(
        "bench",
        "--config",
        str(config_file()),
        "--clip",
        str(CONCOURSE),
        "--frames",
        "6",
        "--compare-threads",
        "1",
        "--json",
        str(out),
        "--markdown",
        str(table),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert KEYS <= report.keys()
    assert report["frames"] == 6 and report["detector_fps"] > 0 and report["peer_fps"] > 0
    assert {"capture", "invoke", "tracking", "analytics"} <= report["stages"].keys()
    assert report["edgetpu"]["available"] is False and "Edge TPU" in report["edgetpu"]["reason"]
    assert "| ratio pipeline / detector |" in table.read_text()
    # The daemon alone, in its own process, is lighter than the bench with the peer and every
    # model loaded; the child ran the same frames with a typical geometry.
    assert 0 < report["daemon_rss_peak_mb"] < report["rss_peak_mb"]
    assert report["daemon_frames"] == 6


@pytest.mark.slow
def test_bench_finds_the_models_under_the_default_state_dir(
    tmp_path: Path, model_dir: Path
) -> None:
    """As root with defaults the models live in ``<state_dir>/models``: the bench's temporary
    state dirs must not hide them (it looked for them there and failed)."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "models").symlink_to(model_dir)
    config = tmp_path / "intentcam.toml"
    config.write_text(f'[paths]\nstate_dir = "{state}"\n', encoding="utf-8")
    out = tmp_path / "bench.json"
    result = run_cli("bench", "--config", str(config), "--clip", str(CONCOURSE), "--frames", "3",
                     "--no-peer", "--compare-threads", "1", "--json", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["daemon_rss_peak_mb"] > 0


def test_bench_bad_clip_is_a_one_line_error(tmp_path: Path, config_file) -> None:
    result = run_cli("bench", "--config", str(config_file()), "--clip", str(tmp_path / "no.mp4"))
    assert (
        result.returncode == 1 and "not found" in result.stderr and "Traceback" not in result.stderr
    )

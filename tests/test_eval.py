"""``intentcam eval`` on the CAVIAR ground truth, ours beside the peer on the same detections."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from intentcam.evaluation.runner import count_error, count_lines
from intentcam.evaluation.sequence import load_sequence
from tests.cli import run_cli
from tests.data import CAVIAR

KEYS = {"mota", "idf1", "hota", "id_switches", "recall", "precision", "lines", "count_error", "fps"}


@pytest.mark.slow
def test_eval_json_reports_ours_and_the_peer(config_file) -> None:
    result = run_cli("eval", str(CAVIAR), "--json", "--config", str(config_file()))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert KEYS <= report.keys() and KEYS <= report["peer"].keys()
    assert report["frames"] == 295
    assert set(report["lines"]) == {"shop_exit", "corridor"}  # from evaluation/sequences/
    for tracker in (report, report["peer"]):
        assert -1.0 <= tracker["mota"] <= 1.0
        assert 0.0 < tracker["idf1"] <= 1.0 and 0.0 < tracker["hota"] <= 1.0
        assert 0.0 < tracker["recall"] <= 1.0 and 0.0 < tracker["precision"] <= 1.0
    # The claim of the tracking issue, on the same detections: at least as good as the peer.
    assert report["idf1"] >= report["peer"]["idf1"]
    assert report["count_error"] <= report["peer"]["count_error"]


def test_ground_truth_crossings_use_the_daemon_line_logic() -> None:
    sequence = load_sequence(CAVIAR)
    from intentcam.evaluation.runner import gt_rows

    frames = list(range(1, sequence.length + 1))
    counts = count_lines(
        gt_rows(sequence, frames),
        sequence.lines,
        sequence.width / sequence.height,
        sequence.fps,
        0.03,
        1.5,
    )
    # GT track 6 leaves the shop and walks right across the shop_exit line: an "out".
    assert counts["shop_exit"]["out"] >= 1
    assert count_error(counts, counts) == 0.0


def test_bad_sequence_folders_are_one_line_errors(tmp_path: Path, config_file) -> None:
    config = str(config_file())
    empty = run_cli("eval", str(tmp_path), "--config", config)
    assert empty.returncode == 1 and "no seqinfo.ini" in empty.stderr
    broken = tmp_path / "seq"
    shutil.copytree(CAVIAR, broken)
    (broken / "gt" / "gt.txt").write_text("1,2,garbage\n")
    bad_gt = run_cli("eval", str(broken), "--config", config)
    assert bad_gt.returncode == 1 and "gt.txt" in bad_gt.stderr
    assert "Traceback" not in empty.stderr + bad_gt.stderr


def test_a_detector_that_finds_nobody_scores_zero_instead_of_crashing() -> None:
    import numpy as np

    from intentcam.evaluation.runner import gt_rows, mot_metrics

    sequence = load_sequence(CAVIAR)
    frames = [1, 2, 3]
    nobody = [(n, np.zeros(0, dtype=np.int64), np.zeros((0, 4))) for n in frames]
    metrics = mot_metrics(gt_rows(sequence, frames), nobody, sequence)
    assert metrics["recall"] == 0.0 and metrics["mota"] == 0.0 and metrics["idf1"] == 0.0


@pytest.mark.slow
def test_eval_over_a_folder_of_sequences_and_the_mall_counts(config_file) -> None:
    from tests.data import DATA

    result = run_cli(
        "eval",
        str(DATA / "mot"),
        str(DATA / "counting" / "mall_dataset"),
        "--detector",
        "yolox_nano",
        "--every",
        "5",
        "--json",
        "--config",
        str(config_file()),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["detector"] == "yolox_nano"
    kinds = sorted(s["kind"] for s in report["sequences"])
    assert kinds == ["counting", "mot", "mot"]  # both CAVIAR views found inside mot/
    mall = next(s for s in report["sequences"] if s["kind"] == "counting")
    assert mall["frames"] == 80 and 0.2 < mall["ratio"] < 2.0 and mall["gt_mean"] > 20
    mean, rows = report["mean"], [s for s in report["sequences"] if s["kind"] == "mot"]
    assert mean["sequences"] == 2 and KEYS - {"lines", "fps"} <= mean.keys() | {"count_error"}
    assert mean["idf1"] == pytest.approx(sum(r["idf1"] for r in rows) / 2, abs=1e-3)
    assert mean["peer"]["sequences"] == 2

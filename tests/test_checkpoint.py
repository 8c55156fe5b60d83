"""A crash loses at most one checkpoint interval: the open window is checkpointed, and the next
start publishes it marked partial and recovered (through the spool, with its own seq)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from intentcam.records import Record
from intentcam.telemetry.checkpoint import FILE_NAME
from intentcam.telemetry.messages import validation_errors
from tests.cli import intentcam_argv, run_cli
from tests.data import MALL

ENV = {k: v for k, v in os.environ.items() if not k.startswith("INTENTCAM_")}


def _sigkill_mid_window(tmp_path: Path, env: dict[str, str], closed_windows: int) -> list[Record]:
    """Run the daemon on the mall clip in real time until the checkpoint exists and
    ``closed_windows`` counts windows were published, a moment more, then SIGKILL it; the records
    it published."""
    first = tmp_path / "first.jsonl"
    daemon = subprocess.Popen(
        intentcam_argv("run", "--source", str(MALL), "--realtime", "--sink", f"jsonl:{first}"),
        env={**ENV, **env},
        stderr=subprocess.DEVNULL,
    )
    checkpoint = tmp_path / "state" / FILE_NAME
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (
            checkpoint.exists() and len(_counts(first)) >= closed_windows
        ):
            time.sleep(0.5)
        time.sleep(1)  # a few more frames into the open window
    finally:
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
    assert checkpoint.exists()
    return _counts(first)


def _counts(jsonl: Path) -> list[Record]:
    lines = jsonl.read_text().splitlines() if jsonl.exists() else []
    return [r for r in map(json.loads, lines) if r["type"] == "counts"]


def _recover(tmp_path: Path, env: dict[str, str], published: list[Record]) -> Record:
    """Start again: the window the killed run had open goes out, marked, and is not one it had
    published already."""
    second = tmp_path / "second.jsonl"
    result = run_cli("run", "--source", str(MALL), "--max-frames", "3", "--sink", f"jsonl:{second}",
                     env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "did not stop cleanly" in result.stderr
    records = [json.loads(line) for line in second.read_text().splitlines()]
    recovered = [r for r in records if r.get("recovered")]
    assert recovered and recovered[0]["type"] == "counts"
    assert recovered[0]["partial"] is True and recovered[0]["frames"] > 0
    assert validation_errors(recovered[0]) == []
    closed_until = max((r["window"]["end"] for r in published), default="")
    assert recovered[0]["window"]["start"] >= closed_until
    assert not (tmp_path / "state" / FILE_NAME).exists()  # a clean stop closes its own window
    return recovered[0]


@pytest.mark.slow
def test_sigkill_mid_window_loses_at_most_the_checkpoint_interval(
    tmp_path: Path, model_dir: Path
) -> None:
    env = {
        "INTENTCAM_PATHS__STATE_DIR": str(tmp_path / "state"),
        "INTENTCAM_PATHS__MODEL_DIR": str(model_dir),
        "INTENTCAM_ANALYTICS__CHECKPOINT_S": "1",
    }
    published = _sigkill_mid_window(tmp_path, env, closed_windows=0)
    _recover(tmp_path, env, published)


@pytest.mark.slow
def test_a_window_that_closes_is_replaced_in_the_checkpoint_at_once(
    tmp_path: Path, model_dir: Path
) -> None:
    """Checkpoints far apart, windows short: the checkpoint still holds the open window (not
    the one just published, which the next start would drop as already sent)."""
    env = {
        "INTENTCAM_PATHS__STATE_DIR": str(tmp_path / "state"),
        "INTENTCAM_PATHS__MODEL_DIR": str(model_dir),
        "INTENTCAM_ANALYTICS__CHECKPOINT_S": "600",
        "INTENTCAM_ANALYTICS__WINDOW_S": "2",
    }
    published = _sigkill_mid_window(tmp_path, env, closed_windows=2)
    assert len(published) >= 2
    _recover(tmp_path, env, published)

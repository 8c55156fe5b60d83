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

from intentcam.telemetry.checkpoint import FILE_NAME
from intentcam.telemetry.messages import validation_errors
from tests.cli import intentcam_argv, run_cli
from tests.data import MALL

ENV = {k: v for k, v in os.environ.items() if not k.startswith("INTENTCAM_")}


@pytest.mark.slow
def test_sigkill_mid_window_loses_at_most_the_checkpoint_interval(
    tmp_path: Path, model_dir: Path
) -> None:
    env = {
        "INTENTCAM_PATHS__STATE_DIR": str(tmp_path / "state"),
        "INTENTCAM_PATHS__MODEL_DIR": str(model_dir),
        "INTENTCAM_ANALYTICS__CHECKPOINT_S": "1",
    }
    first = tmp_path / "first.jsonl"
    daemon = subprocess.Popen(
        intentcam_argv("run", "--source", str(MALL), "--realtime", "--sink", f"jsonl:{first}"),
        env={**ENV, **env},
        stderr=subprocess.DEVNULL,
    )
    checkpoint = tmp_path / "state" / FILE_NAME
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not checkpoint.exists():
            time.sleep(0.5)
        time.sleep(3)  # a few more frames into the (60 s) window
    finally:
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
    assert checkpoint.exists()
    assert not [r for r in map(json.loads, first.read_text().splitlines()) if r["type"] == "counts"]
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
    assert not checkpoint.exists()  # a clean stop closes its own window

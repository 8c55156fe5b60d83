"""Rollouts through a real hawkBit-style server: gooseBit started on loopback, the daemon polling
its DDI API. A good bundle is installed, hot-swapped and reported ``success``; a bundle that fails
its self-test is refused and reported ``failure`` with the reason, the camera still running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli import intentcam_argv
from tests.data import MALL
from tests.goosebit import GooseBit
from tests.ota_kit import LOAD_PROOF_FPS_RATIO

pytestmark = pytest.mark.slow
ENV = {k: v for k, v in os.environ.items() if not k.startswith("INTENTCAM_")}


def ota_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r.get("type") == "ota"]


def test_gooseBit_rollout_success_then_failure_feedback(  # noqa: N802 - the product's name
    tmp_path: Path, model_dir: Path, ota_kit: Any
) -> None:
    good = ota_kit.bundle("serial-2", serial=2, version="1.1.0")
    slow = ota_kit.bundle("ddi-slow", serial=3, version="1.2.0", budget_ms=0.01)
    (tmp_path / "gb").mkdir()
    server = GooseBit(tmp_path / "gb").start()
    records = tmp_path / "records.jsonl"
    config = tmp_path / "c.toml"
    config.write_text(
        f"""
[device]
id = "cam1"
[ota]
trusted_keys_dir = "{ota_kit.keys}"
probation_s = 4
min_fps_ratio = {LOAD_PROOF_FPS_RATIO}
server_url = "{server.url}"
poll_interval_s = 2
[paths]
model_dir = "{model_dir}"
state_dir = "{tmp_path / "state"}"
""",
        encoding="utf-8",
    )
    daemon = subprocess.Popen(
        intentcam_argv("run", "--config", str(config), "--source", str(MALL), "--realtime",
                       "--sink", f"jsonl:{records}"),
        env=ENV, stdout=subprocess.DEVNULL, stderr=(tmp_path / "daemon.log").open("w"), text=True,
    )  # fmt: skip
    try:
        registered = server.wait_device("cam1", "registered", 60)
        assert registered["hw_model"] == "intentcam" and registered["hw_revision"] == "1"
        server.assign("cam1", server.upload(good))
        try:
            finished = server.wait_device("cam1", "finished", 120, sw_version="1.1.0")
        except AssertionError:
            print((tmp_path / "daemon.log").read_text()[-5000:])
            raise
        assert finished["sw_version"] == "1.1.0"
        assert "probation passed" in finished["last_log"]
        assert ota_records(records)[-1]["state"] == "committed"

        server.assign("cam1", server.upload(slow))
        log = server.wait_device("cam1", "error", 120)["last_log"]
        assert "self_test" in log and "exceeds the 0.01 ms budget" in log
        failed = ota_records(records)[-1]
        assert failed["state"] == "failed" and failed["current"]["version"] == "1.1.0"
        time.sleep(3)  # polls meanwhile (every 2 s) must not run the failed action again
        assert ota_records(records)[-1] == failed
        assert daemon.poll() is None, "the camera must keep running"
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=60)
        server.stop()
    assert daemon.returncode == 0, (tmp_path / "daemon.log").read_text()[-3000:]

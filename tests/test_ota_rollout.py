"""``intentcam-ota rollout`` for fleets without a server: two real daemons behind one Mosquitto,
rings, and the emergency stop at the error threshold."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from intentcam.models.store import sha256_of
from intentcam_ota.rollout import ring_sizes
from tests.brokers import Broker
from tests.cli import intentcam_argv
from tests.data import MALL
from tests.ota_kit import LOAD_PROOF_FPS_RATIO, BundleServer, run_ota
from tests.waiting import wait_until

ENV = {k: v for k, v in os.environ.items() if not k.startswith("INTENTCAM_")}


def test_ring_sizes_are_cumulative_and_end_with_everyone() -> None:
    assert ring_sizes("1,10%,100%", 40) == [1, 4, 40]
    assert ring_sizes("1,50%", 3) == [1, 2, 3]
    assert ring_sizes("5", 3) == [3]
    with pytest.raises(ValueError):
        ring_sizes("0%", 10)


def start_camera(tmp_path: Path, name: str, port: int, model_dir: Path, keys: Path) -> Any:
    config = tmp_path / f"{name}.toml"
    config.write_text(
        f"""
[device]
id = "{name}"
site = "store1"
[mqtt]
host = "127.0.0.1"
port = {port}
[ota]
trusted_keys_dir = "{keys}"
probation_s = 3
min_fps_ratio = {LOAD_PROOF_FPS_RATIO}
[paths]
model_dir = "{model_dir}"
state_dir = "{tmp_path / name}"
""",
        encoding="utf-8",
    )
    argv = intentcam_argv(
        "run", "--config", str(config), "--source", str(MALL), "--realtime", "--sink", "none"
    )
    return subprocess.Popen(argv, env=ENV, stderr=subprocess.PIPE, text=True)


@pytest.mark.broker
@pytest.mark.slow
def test_rollout_in_rings_and_the_stop_at_the_error_threshold(
    tmp_path: Path, model_dir: Path, ota_kit: Any
) -> None:
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker").start()
    cameras = [
        start_camera(tmp_path, name, broker.port, model_dir, ota_kit.keys)
        for name in ("cam-a", "cam-b")
    ]
    bundle = ota_kit.bundle("serial-2", serial=2, version="1.1.0")
    common = ["--broker", "127.0.0.1", "--port", str(broker.port), "--site", "store1", "--json"]
    try:
        # Both daemons up: each listens for commands once connected (and is online by then).
        listening = [f"intentcam/v1/store1/{name}/cmd/+" for name in ("cam-a", "cam-b")]
        assert wait_until(lambda: all(broker.subscriptions(t) for t in listening), timeout=120)
        with BundleServer() as server:
            url = server.add(bundle)
            stopped = run_ota(
                "rollout", "--url", url, "--bundle", str(bundle), *common,
                "--devices", "ghost,cam-a", "--rings", "1,100%", "--ring-timeout", "5",
            )  # fmt: skip
            assert stopped.returncode == 1, stopped.stderr
            body = json.loads(stopped.stdout)
            states = {row["device"]: row["state"] for row in body["devices"]}
            assert not body["completed"]
            assert states == {"ghost": "failed", "cam-a": "skipped"}

            done = run_ota(
                "rollout", "--url", url, "--sha256", sha256_of(bundle), *common,
                "--rings", "1,100%",
            )  # fmt: skip
            assert done.returncode == 0, done.stderr + done.stdout
            body = json.loads(done.stdout)
            assert body["completed"]
            rows = {row["device"]: row for row in body["devices"]}
            assert set(rows) == {"cam-a", "cam-b"}
            assert {row["ring"] for row in rows.values()} == {1, 2}
            assert all(r["state"] == "committed" and r["version"] == "1.1.0" for r in rows.values())
    finally:
        for camera in cameras:
            camera.send_signal(signal.SIGTERM)
        for camera in cameras:
            _, stderr = camera.communicate(timeout=60)
            assert camera.returncode == 0, stderr[-2000:]
        broker.stop()

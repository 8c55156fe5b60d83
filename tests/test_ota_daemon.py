"""OTA in the running daemon, through a real Mosquitto: ``ota_install`` hot-swaps the model between
two frames (no restart, no gap in ``seq``), a model that fails probation on the live camera is
rolled back, and a daemon killed during probation rolls back at its next start."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from intentcam.models.store import sha256_of
from intentcam.telemetry.messages import SPOOLED, validation_errors
from tests.brokers import Broker
from tests.cli import intentcam_argv
from tests.data import MALL
from tests.ota_kit import LOAD_PROOF_FPS_RATIO, BundleServer

pytestmark = [pytest.mark.broker, pytest.mark.slow]
ENV = {k: v for k, v in os.environ.items() if not k.startswith("INTENTCAM_")}
BASE = "intentcam/v1/store1/cam1"


@dataclass
class Listener:
    """Everything the device publishes, in arrival order."""

    port: int
    messages: queue.Queue[tuple[str, dict[str, Any], bool]] = field(default_factory=queue.Queue)
    seen: list[tuple[str, dict[str, Any], bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda c, u, m: self.messages.put(
            (m.topic.removeprefix(BASE + "/"), json.loads(m.payload), bool(m.retain))
        )
        self.client.connect("127.0.0.1", self.port)
        self.client.subscribe(f"{BASE}/#", qos=1)
        self.client.loop_start()

    def wait(self, match: Callable[[str, dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                topic, body, retained = self.messages.get(timeout=1)
            except queue.Empty:
                continue
            self.seen.append((topic, body, retained))
            if match(topic, body):
                return body
        raise AssertionError(f"timed out; last messages: {[t for t, _, _ in self.seen[-10:]]}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def retained(port: int, topic: str) -> dict[str, Any]:
    """The retained message on ``topic``, as a gateway connecting now would read it."""
    got: queue.Queue[dict[str, Any]] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, m: got.put(json.loads(m.payload))
    client.connect("127.0.0.1", port)
    client.subscribe(f"{BASE}/{topic}", qos=1)
    client.loop_start()
    try:
        return got.get(timeout=10)
    finally:
        client.loop_stop()
        client.disconnect()


@dataclass
class Device:
    broker: Broker
    listener: Listener
    state: Path
    start: Callable[[], subprocess.Popen[str]]
    process: subprocess.Popen[str] | None = None

    def command(self, name: str, body: dict[str, Any]) -> None:
        self.listener.client.publish(f"{BASE}/cmd/{name}", json.dumps(body), qos=1)

    def stop(self) -> str:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        _, stderr = self.process.communicate(timeout=60)
        assert self.process.returncode == 0, stderr
        return stderr


@pytest.fixture()
def device(tmp_path: Path, model_dir: Path, ota_kit: Any) -> Iterator[Callable[..., Device]]:
    made: list[Device] = []

    def make(probation_s: float = 4.0) -> Device:
        folder = tmp_path / "broker"
        folder.mkdir()
        broker = Broker(folder).start()
        config = tmp_path / "c.toml"
        config.write_text(
            f"""
[device]
id = "cam1"
site = "store1"
[analytics]
window_s = 1
[mqtt]
host = "127.0.0.1"
port = {broker.port}
[ota]
trusted_keys_dir = "{ota_kit.keys}"
probation_s = {probation_s}
min_fps_ratio = {LOAD_PROOF_FPS_RATIO}
[paths]
model_dir = "{model_dir}"
state_dir = "{tmp_path / "state"}"
""",
            encoding="utf-8",
        )

        def start() -> subprocess.Popen[str]:
            argv = intentcam_argv(
                "run",
                "--config",
                str(config),
                "--source",
                str(MALL),
                "--realtime",
                "--sink",
                "none",
            )
            return subprocess.Popen(
                argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )

        listener = Listener(broker.port)
        dev = Device(broker, listener, tmp_path / "state", start)
        dev.process = start()
        made.append(dev)
        return dev

    yield make
    for dev in made:
        if dev.process is not None and dev.process.poll() is None:
            dev.process.kill()
            dev.process.communicate()
        dev.listener.close()
        dev.broker.stop()


def is_counts(topic: str, body: dict[str, Any]) -> bool:
    return topic == "counts"


def ota_state(*states: str) -> Callable[[str, dict[str, Any]], bool]:
    return lambda topic, body: topic == "ota" and body.get("state") in states


def test_ota_install_over_mqtt_hot_swaps_without_a_restart_or_a_gap(
    device: Callable[..., Device], ota_kit: Any
) -> None:
    dev = device()
    listener = dev.listener
    listener.wait(is_counts, 90)
    bundle = ota_kit.bundle("serial-2", serial=2, version="1.1.0")
    with BundleServer() as server:
        url = server.add(bundle)
        dev.command("ota_install", {"id": "u1", "url": url, "sha256": sha256_of(bundle)})
        reply = listener.wait(lambda t, b: t.endswith("ota_install/reply"), 30)
        assert reply["ok"] and reply["result"]["accepted"], reply
        committed = listener.wait(ota_state("committed", "failed", "rolled_back"), 120)
    assert committed["state"] == "committed", committed
    assert committed["current"]["version"] == "1.1.0" and committed["current"]["serial"] == 2
    states = [b["state"] for t, b, _ in listener.seen if t == "ota"]
    assert states[-6:] == [
        "downloading",
        "verifying",
        "self_test",
        "switching",
        "probation",
        "committed",
    ]
    probation = next(b for t, b, _ in listener.seen if t == "ota" and b["state"] == "probation")
    assert probation["frames_skipped"] == 0 and probation["swap_ms"] < 1000
    print(f"hot swap: {probation['swap_ms']} ms between two frames, 0 frames skipped")
    after = [listener.wait(is_counts, 30) for _ in range(2)]
    status = retained(dev.broker.port, "status")
    assert status["state"] == "online" and validation_errors(status) == []
    assert status["models"][0]["version"] == "1.1.0"
    assert status["ota"]["state"] == "committed"
    assert retained(dev.broker.port, "ota")["state"] == "committed"
    dev.stop()
    spooled = sorted(b["seq"] for t, b, _ in listener.seen if t in SPOOLED)
    assert spooled == list(range(spooled[0], spooled[-1] + 1)), "a gap in seq"
    counts = [b["seq"] for t, b, _ in listener.seen if t == "counts"]
    assert counts[-1] >= after[-1]["seq"] and len(counts) >= 4
    assert all(validation_errors(b) == [] for t, b, _ in listener.seen if t == "ota")


def test_a_model_that_fails_probation_on_the_camera_is_rolled_back(
    device: Callable[..., Device], ota_kit: Any, tmp_path: Path, manifest: Any
) -> None:
    labels = manifest.labels_path(manifest.get("ssd_mobilenet_v2_coco_quant"))
    lines = labels.read_text().splitlines()
    lines[0], lines[7] = lines[7], lines[0]  # it looks for trucks: nobody on the live camera
    swapped = tmp_path / "coco_labels.txt"
    swapped.write_text("\n".join(lines) + "\n")
    # Its own reference says nobody, so it passes the self-test; probation catches it.
    blind = ota_kit.bundle("blind-own", "--labels", str(swapped))
    dev = device(probation_s=6)
    listener = dev.listener
    listener.wait(is_counts, 90)
    before = retained(dev.broker.port, "status")["models"][0]
    with BundleServer() as server:
        url = server.add(blind)
        dev.command("ota_install", {"url": url, "sha256": sha256_of(blind)})
        outcome = listener.wait(ota_state("committed", "failed", "rolled_back"), 120)
    assert outcome["state"] == "rolled_back", outcome
    assert "people per frame" in outcome["reason"]
    assert outcome["current"] is None  # back on the packaged model
    status = retained(dev.broker.port, "status")
    assert status["models"][0]["id"] == before["id"] and status["ota"]["state"] == "rolled_back"
    listener.wait(is_counts, 30)  # still running
    dev.stop()


def test_a_daemon_killed_in_probation_rolls_back_at_the_next_start(
    device: Callable[..., Device], ota_kit: Any
) -> None:
    dev = device(probation_s=600)
    listener = dev.listener
    listener.wait(is_counts, 90)
    bundle = ota_kit.bundle("serial-2", serial=2, version="1.1.0")
    with BundleServer() as server:
        url = server.add(bundle)
        dev.command("ota_install", {"url": url, "sha256": sha256_of(bundle)})
        listener.wait(ota_state("probation", "failed"), 120)
    assert dev.process is not None
    dev.process.kill()  # SIGKILL in probation: the power cut of a real device
    dev.process.communicate()
    dev.process = dev.start()
    rolled = listener.wait(ota_state("rolled_back"), 90)
    assert "was in probation when the daemon last stopped" in rolled["reason"]
    # The birth status (degraded, with the reason) comes with the same connect.
    statuses = [b for t, b, _ in listener.seen if t == "status" and b["state"] == "degraded"]
    assert statuses, [t for t, _, _ in listener.seen[-10:]]
    assert "rolled back" in statuses[-1]["reason"] and validation_errors(statuses[-1]) == []
    listener.wait(is_counts, 60)
    dev.stop()


def test_install_and_rollback_with_and_without_a_running_daemon(
    tmp_path: Path, model_dir: Path, ota_kit: Any
) -> None:
    from tests.cli import run_cli

    env = {
        "INTENTCAM_PATHS__STATE_DIR": str(tmp_path / "state"),
        "INTENTCAM_PATHS__MODEL_DIR": str(model_dir),
        "INTENTCAM_OTA__TRUSTED_KEYS_DIR": str(ota_kit.keys),
        "INTENTCAM_OTA__PROBATION_S": "3",
        # About the install and rollback paths, not the frame-rate gate: on a busy test machine
        # 3 s of probation once ran at 1.1 fps against a 3.1 baseline.
        "INTENTCAM_OTA__MIN_FPS_RATIO": str(LOAD_PROOF_FPS_RATIO),
    }
    offline = run_cli("ota", "install", str(ota_kit.bundle("good")), env=env)
    assert offline.returncode == 0 and "next start" in offline.stdout, offline.stderr
    records = tmp_path / "records.jsonl"
    argv = intentcam_argv("run", "--source", str(MALL), "--realtime", "--sink", f"jsonl:{records}")
    daemon = subprocess.Popen(argv, env={**ENV, **env}, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        states: list[str] = []
        while time.monotonic() < deadline and "committed" not in states:
            time.sleep(0.5)
            if records.exists():
                lines = records.read_text().splitlines()
                states = [json.loads(x)["state"] for x in lines if '"type":"ota"' in x]
        assert states[:2] == ["probation", "committed"], states  # the trial started by this start
        live = run_cli(
            "ota", "install", str(ota_kit.bundle("serial-2", serial=2, version="1.1.0")), env=env
        )
        assert live.returncode == 0, live.stderr
        assert "handed to the running daemon" in live.stderr and "committed" in live.stdout
        back = run_cli("ota", "rollback", "--reason", "test", env=env)
        assert back.returncode == 0, back.stderr
        status = json.loads(run_cli("ota", "status", "--json", env=env).stdout)
        assert status["daemon_running"] and status["committed"]["version"] == "1.0.0"
        assert status["last_state"] == "rolled_back"
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, stderr[-2000:]

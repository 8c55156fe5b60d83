"""The gateway contract over a real Mosquitto: state that survives SIGKILL, live ``state`` and
``events``, Home Assistant discovery as Home Assistant reads it, and the decommission command."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment
from paho.mqtt.enums import CallbackAPIVersion

from intentcam.telemetry.checkpoint import FILE_NAME as CHECKPOINT
from intentcam.telemetry.messages import validation_errors
from tests.brokers import Broker
from tests.cli import intentcam_argv
from tests.data import CONCOURSE
from tests.test_telemetry import ENV, start_daemon, write_config
from tests.waiting import wait_until

DISCOVERY = "homeassistant/device/intentcam_cam1/config"
BASE = "intentcam/v1/store1/cam1"


@dataclass
class Listener:
    """A gateway (and a Home Assistant) subscribed to everything the camera publishes."""

    port: int
    seen: list[tuple[str, bytes, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"gw-{id(self)}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", self.port)
        self.client.subscribe([(f"{BASE}/#", 1), ("homeassistant/#", 1)])
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.seen.append((message.topic, bytes(message.payload), bool(message.retain)))

    def messages(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            seen = list(self.seen)
        found = [json.loads(p) for t, p, _ in seen if t.startswith(BASE) and p]
        return [m for m in found if kind is None or m.get("type") == kind]

    def payloads(self, topic: str) -> list[bytes]:
        with self.lock:
            return [payload for t, payload, _ in self.seen if t == topic]

    def wait(self, done: Any, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not done():
            time.sleep(0.2)
        assert done(), "timed out"

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[Broker]:
    folder = tmp_path / "broker"
    folder.mkdir()
    running = Broker(folder).start()
    yield running
    running.stop()


def contract_config(tmp_path: Path, model_dir: Path, broker: Broker, window: float = 1.0) -> Path:
    config = write_config(tmp_path / "c.toml", model_dir, tmp_path / "state", broker, window=window)
    text = config.read_text(encoding="utf-8")
    text = text.replace("[analytics]\n", "[analytics]\ncheckpoint_s = 1\n")
    text = text.replace("[telemetry]\n", "[telemetry]\nevents = true\nstate_interval_s = 0.2\n")
    config.write_text(text + "\n[homeassistant]\nenabled = true\n", encoding="utf-8")
    return config


@contextmanager
def camera_on_clip(
    tmp_path: Path, model_dir: Path, broker: Broker
) -> Iterator[tuple[Listener, subprocess.Popen]]:
    """A camera daemon on the concourse clip at real-time pace, and a gateway listening."""
    config = contract_config(tmp_path, model_dir, broker)
    gateway = Listener(broker.port)
    daemon = start_daemon(config, "--source", str(CONCOURSE), "--realtime")
    try:
        yield gateway, daemon
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)
        gateway.close()


def checkpoint_written_since(state_dir: Path, moment: float) -> bool:
    path = state_dir / CHECKPOINT
    try:
        return path.stat().st_mtime >= moment
    except FileNotFoundError:
        return False


def crossed(counts: dict[str, Any]) -> int:
    return sum(sum(line.values()) for line in counts["today"]["lines"].values())


@pytest.mark.broker
def test_a_restart_after_sigkill_continues_the_day_and_windows_never_collide(
    tmp_path: Path, model_dir: Path, broker: Broker
) -> None:
    config = contract_config(tmp_path, model_dir, broker, window=5.0)
    gateway = Listener(broker.port)
    try:
        first = start_daemon(config, "--source", str(CONCOURSE), "--realtime")
        gateway.wait(lambda: any(crossed(c) >= 2 for c in gateway.messages("counts")))
        # Killed mid-window, once a checkpoint (every 1 s) of the open window has been written.
        seen_at = time.time()
        assert wait_until(lambda: checkpoint_written_since(tmp_path / "state", seen_at), 60)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        (boot_1,) = {m["boot_id"] for m in gateway.messages("counts")}
        second = start_daemon(config, "--source", str(CONCOURSE), "--max-frames", "120")
        _, stderr = second.communicate(timeout=180)
        assert second.returncode == 0, stderr
        gateway.wait(lambda: any(m.get("state") == "stopped" for m in gateway.messages("status")))
    finally:
        gateway.close()

    everything = gateway.messages()
    problems = [(m["type"], validation_errors(m)) for m in everything if validation_errors(m)]
    assert problems == []
    counts = gateway.messages("counts")
    boots = [m["boot_id"] for m in gateway.messages("status") if m["state"] == "online"]
    boot_2 = boots[-1]
    assert boot_2 != boot_1
    # What the first run left: its newest counts message, including the checkpointed window the
    # second run published for it (under the first run's boot id).
    last_of_boot_1 = max((m for m in counts if m["boot_id"] == boot_1), key=lambda m: m["seq"])
    assert any(m.get("recovered") for m in counts if m["boot_id"] == boot_1)
    birth = next(m for m in gateway.messages("status") if m["boot_id"] == boot_2)
    assert birth["occupancy"]["store"] == last_of_boot_1["store_occupancy"]
    first_state = next(m for m in gateway.messages("state") if m["boot_id"] == boot_2)
    assert first_state["store_occupancy"] == last_of_boot_1["store_occupancy"]
    assert first_state["today"] == last_of_boot_1["today"] and crossed(last_of_boot_1) >= 2
    # The second run's windows add to the day: its totals never go below the first run's.
    for message in (m for m in counts if m["boot_id"] == boot_2):
        for line, totals in message["today"]["lines"].items():
            before = last_of_boot_1["today"]["lines"][line]
            assert all(totals[d] >= before[d] for d in ("in", "out"))
    # (boot_id, window.start) names one window's content.
    by_window: dict[tuple[str, str], str] = {}
    for message in counts:
        body = {k: v for k, v in message.items() if k not in ("seq", "ts")}
        key = (message["boot_id"], message["window"]["start"])
        assert by_window.setdefault(key, json.dumps(body, sort_keys=True)) == json.dumps(
            body, sort_keys=True
        ), f"two different counts for {key}"
    first_window = min((m for m in counts if m["boot_id"] == boot_2), key=lambda m: m["seq"])
    assert (
        first_window["partial"] and first_window["covered_start"] > first_window["window"]["start"]
    )
    # Every seq continues across the restart, on every topic that has one.
    for kind in ("status", "health", "state"):
        seqs = {boot: [m["seq"] for m in gateway.messages(kind) if m["boot_id"] == boot]
                for boot in (boot_1, boot_2)}  # fmt: skip
        assert seqs[boot_1] and seqs[boot_2], kind
        assert min(seqs[boot_2]) > max(seqs[boot_1]), f"{kind} seq restarted"
        if kind != "status":  # a last will is composed at connect, before later statuses
            assert seqs[boot_2] == sorted(seqs[boot_2]), kind
    # The second run stopped cleanly: its crossing events are exactly its counted crossings.
    events = [m for m in gateway.messages("event") if m["boot_id"] == boot_2]
    for line in last_of_boot_1["today"]["lines"]:
        for direction in ("in", "out"):
            counted = sum(m["lines"][line][direction] for m in counts if m["boot_id"] == boot_2)
            told = sum(
                1
                for e in events
                if e["event"] == "crossing" and e["line"] == line and e["direction"] == direction
            )
            assert told == counted, (line, direction)
    assert all("token" not in e for e in events), "no session token unless event_tokens"
    entries = sum(m["zones"]["left"]["entries"] for m in counts if m["boot_id"] == boot_2)
    assert entries == sum(1 for e in events if e["event"] == "zone_entry")


# --- Home Assistant -------------------------------------------------------------------------

#: What Home Assistant's MQTT integration requires of a device discovery message and its
#: sensors (homeassistant/components/mqtt: discovery.py, sensor.py, const.py).
SENSOR_DEVICE_CLASSES = {"temperature": {"°C", "°F", "K"}}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
ENTITY_CATEGORIES = {"config", "diagnostic"}


def home_assistant_problems(config: dict[str, Any]) -> list[str]:
    problems = []
    device = config.get("dev") or config.get("device") or {}
    if not (device.get("ids") or device.get("identifiers") or device.get("cns")):
        problems.append("dev needs ids or cns")
    origin = config.get("o") or config.get("origin") or {}
    if not origin.get("name"):
        problems.append("o.name is required for device discovery")
    components = config.get("cmps") or config.get("components")
    if not isinstance(components, dict) or not components:
        problems.append("cmps must be a non-empty object")
        return problems
    unique_ids = set()
    for key, component in components.items():
        if component.get("p") != "sensor":
            problems.append(f"{key}: p must name a platform")
            continue
        if len(component) == 1:
            continue  # a removal
        unique_id = component.get("unique_id")
        if not unique_id or unique_id in unique_ids:
            problems.append(f"{key}: unique_id missing or repeated")
        unique_ids.add(unique_id)
        if not (component.get("state_topic") or config.get("state_topic")):
            problems.append(f"{key}: sensor needs state_topic")
        if component.get("state_class", "measurement") not in STATE_CLASSES:
            problems.append(f"{key}: state_class {component.get('state_class')}")
        if component.get("entity_category", "diagnostic") not in ENTITY_CATEGORIES:
            problems.append(f"{key}: entity_category {component.get('entity_category')}")
        device_class = component.get("device_class")
        if device_class is not None and component.get(
            "unit_of_measurement"
        ) not in SENSOR_DEVICE_CLASSES.get(device_class, set()):
            problems.append(f"{key}: unit not valid for device_class {device_class}")
    return problems


def render(template: str, message: dict[str, Any]) -> str:
    """A value template as Home Assistant renders it (sandboxed Jinja, ``value_json``)."""
    environment = ImmutableSandboxedEnvironment()
    return environment.from_string(template).render(value_json=message, value=json.dumps(message))


@pytest.mark.broker
def test_home_assistant_discovers_the_camera_and_decommission_removes_it(
    tmp_path: Path, model_dir: Path, broker: Broker
) -> None:
    with camera_on_clip(tmp_path, model_dir, broker) as (gateway, daemon):
        gateway.wait(lambda: gateway.messages("health") and gateway.messages("state"))
        announced = gateway.payloads(DISCOVERY)
        assert announced, "no discovery message"
        discovery = json.loads(announced[-1])
        # Home Assistant restarting asks every device to announce itself again.
        gateway.client.publish("homeassistant/status", b"online", qos=1)
        gateway.wait(lambda: len(gateway.payloads(DISCOVERY)) > len(announced))
        command = json.dumps({"id": "bye"}).encode()
        gateway.client.publish(f"{BASE}/cmd/decommission", command, qos=1)
        gateway.wait(lambda: b"" in gateway.payloads(DISCOVERY))
        gateway.wait(lambda: gateway.messages("reply"))

    assert home_assistant_problems(discovery) == []
    components = discovery["cmps"]
    assert {"store_occupancy", "zone_left_occupancy", "line_mid_in_today", "fps"} <= set(components)
    assert components["line_mid_in_today"]["state_class"] == "total_increasing"
    status = gateway.messages("status")[0]
    availability = discovery["availability"][0]
    assert availability["topic"] == f"{BASE}/status"
    assert render(availability["value_template"], status) == "online"
    stopped = {**status, "state": "stopped"}
    assert render(availability["value_template"], stopped) == "offline"
    state, health = gateway.messages("state")[-1], gateway.messages("health")[-1]
    sources = {f"{BASE}/state": state, f"{BASE}/health": health}
    for key, component in components.items():
        value = render(component["value_template"], sources[component["state_topic"]])
        if key == "temperature" and health["temperature_c"] is None:
            assert value == "unknown"
        else:
            float(value)  # every sensor renders a number from the real message
    assert render(components["store_occupancy"]["value_template"], state) == str(
        state["store_occupancy"]
    )
    assert render(components["line_mid_out_today"]["value_template"], state) == str(
        state["today"]["lines"]["mid"]["out"]
    )
    reply = gateway.messages("reply")[-1]
    assert reply["ok"] and reply["result"]["homeassistant"] == "removed"
    # A Home Assistant that connects now finds no device: the retained config is gone.
    late = Listener(broker.port)
    try:
        late.wait(lambda: late.messages("state"))  # the retained state stays for gateways
        # Retained messages come on subscribing, homeassistant/# after the telemetry's: a
        # discovery config that survived would come right behind the state.
        time.sleep(0.5)
        assert late.payloads(DISCOVERY) == []
    finally:
        late.close()


# --- fleet inventory ------------------------------------------------------------------------


def fleet(broker: Broker, *args: str) -> tuple[int, str]:
    done = subprocess.run(
        intentcam_argv("fleet", "--broker", f"127.0.0.1:{broker.port}", "--site", "store1", *args),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in done.stderr
    return done.returncode, done.stdout


@pytest.mark.broker
def test_fleet_lists_every_camera_and_fails_on_a_stale_or_dead_one(
    tmp_path: Path, model_dir: Path, broker: Broker
) -> None:
    with camera_on_clip(tmp_path, model_dir, broker) as (gateway, daemon):
        gateway.wait(lambda: gateway.messages("health"))
        code, out = fleet(broker, "--json")
        assert code == 0, out
        (row,) = json.loads(out)
        status = gateway.messages("status")[0]
        assert row["device"] == "cam1" and row["verdict"] == "ok" and row["state"] == "online"
        assert row["firmware"] == status["firmware"] and row["config_hash"] == status["config_hash"]
        assert row["models"].startswith(status["models"][0]["id"])
        assert row["fps"] is not None and row["spool_depth"] is not None
        assert row["last_seen_s"] is not None and row["last_seen_s"] < 30
        # A second camera whose last health is an hour old (its link died, its birth stayed).
        old = {**gateway.messages("health")[-1], "device": "cam2", "ts": "2020-01-01T00:00:00Z"}
        born = {**status, "device": "cam2"}
        for kind, message in (("status", born), ("health", old)):
            topic = f"intentcam/v1/store1/cam2/{kind}"
            gateway.client.publish(
                topic, json.dumps(message), qos=1, retain=True
            ).wait_for_publish()
        code, out = fleet(broker)
        assert code == 1
        assert "cam2: stale: last health" in out and "store1/cam1" in out
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=10)
        gateway.wait(lambda: any(m["state"] == "offline" for m in gateway.messages("status")))
        code, out = fleet(broker, "--json")
        rows = {r["device"]: r for r in json.loads(out)}
        assert code == 1 and rows["cam1"]["verdict"] == "offline"
        assert rows["cam1"]["firmware"], "the last will carries the inventory"


def test_the_inventory_judges_each_device_from_its_messages() -> None:
    from intentcam.telemetry.fleet import Inventory, table

    now = 1_800_000_000.0
    fresh, old = "2027-01-15T08:00:00Z", "2027-01-15T07:00:00Z"  # now = 08:00:00 UTC
    inventory = Inventory()

    def add(device: str, kind: str, **body: Any) -> None:
        message = {"type": kind, "site": "s", "device": device, **body}
        inventory.add(f"intentcam/v1/s/{device}/{kind}", json.dumps(message).encode())

    models = [{"id": "yolox_nano", "version": "1.0.0"}]
    for device in ("a", "b", "c", "d"):
        add(device, "status", state="online", firmware="0.1.0", models=models, config_hash="f" * 16)
    add("a", "health", ts=fresh, fps=9.5, temperature_c=61.2, spool={"depth": 0},
        throttled={"under_voltage": False, "throttled": True},
        alerts={"fired": 4, "expired": 1})  # fmt: skip
    add("b", "health", ts=old, fps=9.5, spool={"depth": 12})
    add("c", "status", state="degraded", reason="spool cannot write", firmware="0.1.0")
    add("c", "health", ts=fresh, fps=9.0, spool={"depth": 3})
    add("d", "status", state="offline", firmware="0.1.0")
    inventory.add("intentcam/v1/s/e/status", b"not json")  # ignored, never fatal
    rows = {row.device: row for row in inventory.rows(now, stale_after_s=90)}
    assert set(rows) == {"a", "b", "c", "d"}
    assert rows["a"].verdict == "ok" and rows["a"].throttled == ["throttled"]
    assert rows["a"].models == "yolox_nano 1.0.0" and rows["a"].last_seen_s == 0.0
    assert rows["b"].verdict == "stale" and "3600 s ago" in rows["b"].why
    assert rows["c"].verdict == "degraded" and "spool cannot write" in rows["c"].why
    assert rows["d"].verdict == "offline"
    text = table(list(rows.values()))
    assert text.splitlines()[0].split()[:3] == ["SITE/DEVICE", "VERDICT", "STATE"]
    assert "s/b: stale: last health 3600 s ago" in text
    assert "s/a: 1 staff alert(s) expired undelivered" in text and rows["a"].verdict == "ok"

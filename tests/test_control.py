"""The control plane: every command answered, bad ones refused without changing anything."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from intentcam.config import load_config, redacted
from intentcam.control import COMMANDS, ControlPlane, GeometryStore, Reply
from intentcam.telemetry.messages import validation_errors
from tests.brokers import Broker, free_port, subscribe
from tests.cli import intentcam_argv, run_cli
from tests.data import MALL

ENV = {k: v for k, v in os.environ.items() if not k.startswith("INTENTCAM_")}

VALID_ZONES = {
    "lines": [{"id": "door", "points": [[0.1, 0.9], [0.9, 0.9]]}],
    "zones": [
        {
            "id": "new-zone",
            "kind": "display",
            "points": [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]],
        }
    ],
}


def make_plane(tmp_path: Path) -> tuple[ControlPlane, list[Reply], Path]:
    config = tmp_path / "c.toml"
    config.write_text(
        '[[zones]]\nid = "shelf"\npoints = [[0, 0], [0.5, 0], [0.5, 0.5]]\n'
        f'[paths]\nstate_dir = "{tmp_path / "state"}"\n',
        encoding="utf-8",
    )
    replies: list[Reply] = []
    plane = ControlPlane(
        load_config(config),
        GeometryStore(tmp_path / "state"),
        replies.append,
        config_path=config,
        max_bytes=1024,
    )
    return plane, replies, config


def test_each_command_gets_its_reply(tmp_path: Path) -> None:
    plane, replies, _ = make_plane(tmp_path)
    applied = []
    plane.apply_geometry = applied.append
    plane.handle("ping", b"")
    plane.handle("get_config", b'{"id": 7}')
    plane.handle("set_zones", json.dumps(VALID_ZONES).encode())
    plane.handle("reset_counters", b"{}")
    plane.handle("reload", b"")
    plane.apply_pending()
    by_command = {reply.command: reply for reply in replies}
    assert all(reply.ok for reply in replies), replies
    assert by_command["ping"].result["pong"] is True
    assert by_command["get_config"].request_id == 7
    assert (tmp_path / "state" / "zones.json").exists()
    assert (
        json.loads((tmp_path / "state" / "zones.json").read_text())["zones"][0]["id"] == "new-zone"
    )
    assert applied and applied[0].zones[0].id == "new-zone"
    assert by_command["reload"].result["restart_required"] == []


@pytest.mark.parametrize(
    "name, payload, expected",
    [
        ("selfdestruct", b"{}", "unknown command 'selfdestruct'"),
        ("ping", b"{not json", "invalid JSON"),
        ("ping", b"[1, 2]", "must be a JSON object"),
        ("ping", b"\xff\xfe", "not UTF-8"),
        ("ping", b'{"id": [1]}', "id must be a string or an integer"),
        ("reset_counters", b'{"force": true}', "unknown field(s) for reset_counters: force"),
        ("set_zones", b"{}", "lines: Field required"),
        (
            "set_zones",
            b'{"lines": [], "zones": [{"id": "z", "points": [[0, 0], [2, 0], [0, 1]]}]}',
            "zones.0.points",
        ),
        ("set_zones", b'{"lines": [{"id": "a", "points": "nope"}], "zones": []}', "lines.0.points"),
        ("set_zones", b'{"lines": [], "zones": [], "extra": 1}', "extra: unknown setting"),
        ("ping", b"x" * 2000, "exceeds the 1024-byte limit"),
        ("ota_install", b"{}", "ota_install needs url"),
        ("ota_install", b'{"url": "file:///etc/passwd", "sha256": "00"}', "needs url: an http"),
        ("ota_install", b'{"url": "http://h/b.swu", "sha256": "xyz"}', "needs sha256"),
        (
            "ota_install",
            b'{"url": "http://h/b.swu", "sha256": "' + b"a" * 64 + b'", "x": 1}',
            "unknown field(s) for ota_install: x",
        ),
        (
            "ota_install",
            b'{"url": "http://h/b.swu", "sha256": "' + b"a" * 64 + b'"}',
            "no OTA agent",
        ),
        ("test_alert", b"{}", "no alert rule is on: add one to [alerts]"),
        ("test_alert", b'{"zone": "x"}', "unknown field(s) for test_alert: zone"),
        ("test_alert", b'{"rule": 3}', "rule must be the id of a rule in [alerts]"),
    ],
)
def test_bad_commands_are_refused_by_name_and_change_nothing(
    tmp_path: Path, name: str, payload: bytes, expected: str
) -> None:
    plane, replies, _ = make_plane(tmp_path)
    before = redacted(plane.settings)
    plane.handle(name, payload)
    plane.apply_pending()
    assert len(replies) == 1 and not replies[0].ok
    assert expected in replies[0].error
    assert redacted(plane.settings) == before
    assert not (tmp_path / "state" / "zones.json").exists()


def test_a_test_alert_names_its_rule_and_a_zone_it_watches(tmp_path: Path) -> None:
    """``test_alert`` picks the rule asked for (or the first one on) and a zone of its kind; the
    daemon's callback gets them on the frame loop and its result is the reply."""
    config = tmp_path / "c.toml"
    config.write_text(
        '[[zones]]\nid = "table"\nkind = "shelf"\npoints = [[0, 0], [0.5, 0], [0.5, 0.5]]\n'
        '[[alerts.rules]]\nid = "help"\nkind = "shelf_help"\n'
        '[[alerts.rules]]\nid = "queue"\nkind = "long_queue"\n'
        '[[alerts.rules]]\nid = "off"\nkind = "shelf_help"\nenabled = false\n',
        encoding="utf-8",
    )
    replies: list[Reply] = []
    sent: list[tuple[str, str]] = []

    def send_test_alert(rule: Any, zone: str) -> dict[str, Any]:
        sent.append((rule.id, zone))
        return {"rule": rule.id, "zone": zone}

    plane = ControlPlane(load_config(config), GeometryStore(tmp_path / "state"), replies.append,
                         send_test_alert=send_test_alert)  # fmt: skip
    for payload in (b"", b'{"rule": "help", "id": 1}', b'{"rule": "queue"}', b'{"rule": "off"}'):
        plane.handle("test_alert", payload)
    plane.apply_pending()
    assert sent == [("help", "table"), ("help", "table")]  # nothing sent for the refused two
    assert [reply.ok for reply in replies] == [False, False, True, True]  # refusals answer first
    assert "rule 'queue' watches no zone yet" in str(replies[0].error)
    assert "no rule 'off' is on (on: help, queue)" in str(replies[1].error)
    assert replies[3].request_id == 1 and replies[3].result == {"rule": "help", "zone": "table"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
payloads = st.one_of(
    st.binary(max_size=2048),
    st.text(max_size=300).map(str.encode),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.dictionaries(st.sampled_from(["lines", "zones", "id", "x"]), json_values, max_size=3).map(
        lambda value: json.dumps(value).encode()
    ),
)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@pytest.mark.slow
@given(name=st.sampled_from(COMMANDS) | st.text(max_size=30), payload=payloads)
def test_fuzz_every_payload_is_answered_and_the_config_is_unchanged(
    tmp_path_factory, name, payload
) -> None:
    tmp_path = tmp_path_factory.mktemp("fuzz")
    plane, replies, _ = make_plane(tmp_path)
    before = redacted(plane.settings)
    plane.handle(name, payload)
    plane.apply_pending()
    assert len(replies) == 1
    reply = replies[0]
    assert reply.ok or reply.error
    changed = redacted(plane.settings) != before
    # Only a valid set_zones may change the configuration, and only then is zones.json written.
    assert changed == (
        reply.ok
        and name == "set_zones"
        and (plane.settings.lines, plane.settings.zones) != ([], [])
        or False
    ) or (reply.ok and name == "set_zones")
    assert (tmp_path / "state" / "zones.json").exists() == (reply.ok and name == "set_zones")


# --- through the broker, against the running daemon -------------------------------------


class Commander:
    """An MQTT 5 client that sends commands with a response topic and correlation data."""

    def __init__(self, port: int, base: str) -> None:
        self.base = base
        self.port = port
        self.replies: queue.Queue = queue.Queue()
        self.messages: queue.Queue = queue.Queue()
        self.alerts: queue.Queue = queue.Queue()
        self.response_topic = f"tests/{uuid.uuid4().hex}/replies"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        topics = [self.response_topic, f"{base}/cmd/+/reply", f"{base}/counts", f"{base}/alerts"]
        subscribe(self.client, topics)

    def _on_message(self, client, userdata, message) -> None:
        if message.topic.endswith("/counts"):
            self.messages.put(json.loads(message.payload))
            return
        if message.topic.endswith("/alerts"):
            self.alerts.put(json.loads(message.payload))
            return
        correlation = getattr(message.properties, "CorrelationData", None)
        self.replies.put((message.topic, correlation, json.loads(message.payload)))

    def send(
        self, name: str, payload: bytes, use_response_topic: bool = True, timeout: float = 10
    ) -> tuple[str, bytes | None, dict]:
        properties = None
        correlation = uuid.uuid4().bytes
        if use_response_topic:
            properties = Properties(PacketTypes.PUBLISH)
            properties.ResponseTopic = self.response_topic
            properties.CorrelationData = correlation
        self.client.publish(f"{self.base}/cmd/{name}", payload, qos=1, properties=properties)
        topic, got, reply = self.replies.get(timeout=timeout)
        if use_response_topic:
            assert got == correlation and topic == self.response_topic
        return topic, got, reply

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def quiet_now() -> str:
    """Quiet hours from an hour ago to an hour from now, UTC."""
    now = datetime.now(timezone.utc)
    return "-".join(f"{(now + timedelta(hours=h)):%H:%M}" for h in (-1, 1))


@pytest.fixture()
def running_daemon(tmp_path: Path, model_dir: Path):
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
timezone = "UTC"
[[zones]]
id = "shelf"
points = [[0.0, 0.0], [0.5, 0.0], [0.5, 0.5]]
[[zones]]
id = "tills"
kind = "queue"
points = [[0.5, 0.5], [1.0, 0.5], [1.0, 1.0]]
[[alerts.rules]]
id = "queue"
kind = "long_queue"
min_people = 50
[[alerts.rules]]
id = "night"
kind = "long_queue"
quiet_hours = "{quiet_now()}"
[mqtt]
host = "127.0.0.1"
port = {broker.port}
username = "cam1"
response_prefix = "tests/"
[paths]
model_dir = "{model_dir}"
state_dir = "{tmp_path / "state"}"
""",
        encoding="utf-8",
    )
    env = dict(ENV, INTENTCAM_MQTT__PASSWORD="top-secret")
    daemon = subprocess.Popen(
        intentcam_argv(
            "run", "--config", str(config), "--source", str(MALL), "--realtime", "--sink", "none"
        ),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    commander = Commander(broker.port, "intentcam/v1/store1/cam1")
    try:
        commander.messages.get(timeout=60)  # the daemon is up and publishing
        yield commander, tmp_path
    finally:
        commander.close()
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=60)
        broker.stop()
        assert daemon.returncode == 0, stderr
        assert "top-secret" not in stderr


@pytest.mark.broker
def test_commands_through_the_broker(running_daemon) -> None:
    commander, tmp_path = running_daemon
    _, _, pong = commander.send("ping", b'{"id": "p1"}')
    assert pong["ok"] and pong["id"] == "p1" and validation_errors(pong) == []
    _, _, config = commander.send("get_config", b"")
    assert config["result"]["mqtt"]["password"] == "***"
    assert "top-secret" not in json.dumps(config)
    topic, _, reply = commander.send("reset_counters", b"", use_response_topic=False)
    assert topic.endswith("/cmd/reset_counters/reply") and reply["ok"]
    _, _, refused = commander.send("set_zones", b'{"lines": [], "zones": [{"id": "bad"}]}')
    assert not refused["ok"] and "zones.0.points" in refused["error"]
    _, _, refused = commander.send("launch", b"{}")
    assert not refused["ok"] and "unknown command" in refused["error"]
    _, _, refused = commander.send("ping", b"x" * (70 * 1024))
    assert not refused["ok"] and "65536-byte limit" in refused["error"]
    # A test alert goes out on the alerts topic as a real one would, marked as a test.
    _, _, tried = commander.send("test_alert", b'{"rule": "queue"}')
    assert tried["ok"] and tried["result"]["zone"] == "tills", tried
    assert tried["result"]["quiet_hours_now"] is False
    alert = commander.alerts.get(timeout=10)
    assert alert["alert_id"] == tried["result"]["alert_id"] and alert["test"] is True
    assert alert["reason"] == "a test of rule queue: nobody needs help"
    assert validation_errors(alert) == [] and validation_errors(tried) == []
    # In its quiet hours a rule still sends a test alert; the reply says real ones keep quiet.
    _, _, night = commander.send("test_alert", b'{"rule": "night"}')
    assert night["ok"] and night["result"]["quiet_hours_now"] is True, night
    assert commander.alerts.get(timeout=10)["rule"] == "night"
    _, _, applied = commander.send("set_zones", json.dumps(VALID_ZONES).encode())
    assert applied["ok"], applied
    stored = json.loads((tmp_path / "state" / "zones.json").read_text())
    assert [zone["id"] for zone in stored["zones"]] == ["new-zone"]
    # Applied live: a later counts window reports the new zone and line, not the old zone.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        counts = commander.messages.get(timeout=30)
        if "new-zone" in counts["zones"]:
            assert not {"shelf", "tills"} & set(counts["zones"]) and "door" in counts["lines"]
            break
    else:
        pytest.fail("no counts window with the new zone")
    _, _, reloaded = commander.send("reload", b"")
    assert reloaded["ok"] and reloaded["result"]["restart_required"] == []


@pytest.mark.broker
def test_intentcam_send_gets_the_reply_and_exits_by_it(running_daemon) -> None:
    """``intentcam send``: 0 and the result when the camera did it, 1 and the reason when it
    refused, 2 for what never reached it (an unknown command, bad JSON, a silent camera)."""
    commander, _ = running_daemon
    broker = ("--broker", f"127.0.0.1:{commander.port}", "--site", "store1")
    tried = run_cli("send", *broker, "cam1", "test_alert", '{"rule": "queue"}', "--json")
    assert tried.returncode == 0, tried.stderr
    reply = json.loads(tried.stdout)
    assert reply["type"] == "reply" and reply["result"]["zone"] == "tills"
    assert reply["id"].startswith("send-") and validation_errors(reply) == []
    assert commander.alerts.get(timeout=10)["alert_id"] == reply["result"]["alert_id"]
    pong = run_cli("send", *broker, "cam1", "ping", '{"id": 42}')
    assert pong.returncode == 0 and pong.stdout.startswith('cam1 ping: ok {"pong": true'), pong
    refused = run_cli("send", *broker, "cam1", "test_alert", '{"rule": "nope"}')
    assert refused.returncode == 1 and "refused: rule: no rule 'nope' is on" in refused.stderr
    for args, said in (
        (("cam1", "selfdestruct"), "unknown command 'selfdestruct' (known: ping,"),
        (("cam1", "ping", "{not json"), "payload: not JSON"),
        (("cam1", "ping", "[]"), "payload: must be a JSON object"),
        (("cam9", "ping", "--timeout", "1"), "no reply from store1/cam9 to ping within 1 s"),
    ):
        result = run_cli("send", *broker, *args)
        assert result.returncode == 2 and said in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    nobody = run_cli("send", "--broker", f"127.0.0.1:{free_port()}", "--site", "s", "c", "ping")
    assert nobody.returncode == 2 and "mqtt 127.0.0.1:" in nobody.stderr


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@pytest.mark.broker
@given(name=st.sampled_from(["ping", "set_zones", "reset_counters", "nope"]), payload=payloads)
def test_fuzz_through_the_broker(running_daemon, name, payload) -> None:
    commander, tmp_path = running_daemon
    zones_file = tmp_path / "state" / "zones.json"
    before = zones_file.read_bytes() if zones_file.exists() else None
    _, _, reply = commander.send(name, payload)
    assert validation_errors(reply) == []
    assert reply["ok"] or reply["error"]
    if not (reply["ok"] and name == "set_zones"):
        assert (zones_file.read_bytes() if zones_file.exists() else None) == before

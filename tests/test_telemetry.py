"""Telemetry over a real Mosquitto: schema-valid stream, outage, SIGKILL, TLS and passwords."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from intentcam.telemetry.health import throttled
from intentcam.telemetry.messages import decode_heatmap, encode_heatmap, validation_errors
from intentcam.telemetry.spool import Spool
from tests.brokers import Broker, add_password, make_pki
from tests.cli import intentcam_argv
from tests.data import CONCOURSE
from tests.waiting import wait_until

ENV = {k: v for k, v in os.environ.items() if not k.startswith("INTENTCAM_")}


# --- units --------------------------------------------------------------------------------


def test_heatmap_encoding_round_trip() -> None:
    cells = np.zeros((18, 32))
    cells[3, 4], cells[17, 31] = 12.34, 7000.0  # over 6553.5 s forces uint32
    encoded = encode_heatmap(cells)
    assert encoded["dtype"] == "uint32" and encoded["encoding"] == "zlib+base64"
    decoded = decode_heatmap({"grid": [32, 18], **encoded})
    assert decoded[3, 4] == pytest.approx(12.3) and decoded[17, 31] == pytest.approx(7000.0)
    assert encode_heatmap(np.ones((2, 2)))["dtype"] == "uint16"


def test_spool_keeps_seq_across_restarts_and_deletes_only_on_ack(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    seqs = [spool.put("t", 1, lambda seq: f"m{seq}".encode()) for _ in range(3)]
    assert seqs == [1, 2, 3]
    spool.ack(2)
    spool.close()
    reopened = Spool(tmp_path / "spool.sqlite")
    assert [m.seq for m in reopened.pending()] == [1, 3]
    assert [m.payload for m in reopened.pending()] == [b"m1", b"m3"]
    assert reopened.put("t", 1, lambda seq: b"x") == 4  # never reused, even after acks
    assert reopened.pending(after_seq=3)[0].seq == 4


def test_spool_limits_drop_the_oldest_and_count_them(tmp_path: Path) -> None:
    now = [1000.0]
    spool = Spool(tmp_path / "s.sqlite", max_bytes=64 * 1024, max_age_s=60, clock=lambda: now[0])
    for _ in range(100):
        spool.put("t", 1, lambda seq: b"x" * 1024)
    stats = spool.stats()
    assert stats["bytes"] <= 64 * 1024 and stats["dropped"] == 100 - stats["depth"]
    assert spool.pending()[0].seq == 100 - stats["depth"] + 1  # the oldest went first
    now[0] += 61
    spool.put("t", 1, lambda seq: b"y")
    assert spool.stats()["depth"] == 1 and spool.stats()["dropped"] == 100


def test_the_day_state_is_stored_with_its_message_and_counters_survive(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    spool = Spool(path)
    spool.put("t/counts", 1, lambda seq: b"first", state='{"n": 1}')
    spool.put("t/heatmap", 1, lambda seq: b"no state")
    assert [spool.next_number("health") for _ in range(3)] == [1, 2, 3]
    assert spool.next_number("status") == 1
    spool.close()
    again = Spool(path)
    assert again.saved_state() == '{"n": 1}'
    assert again.next_number("health") == 4 and again.next_number("status") == 2
    seq = again.put("t/counts", 1, lambda seq: b"second", state='{"n": 2}')
    again.ack(seq)  # a delivered message takes nothing of the state with it
    again.close()
    assert Spool(path).saved_state() == '{"n": 2}'


def test_throttling_flags_are_decoded_by_name(tmp_path: Path) -> None:
    word = tmp_path / "get_throttled"
    word.write_text("0x50005\n")  # under-voltage now and since boot; throttled now and since boot
    flags = throttled(word)
    assert flags is not None
    assert {name for name, on in flags.items() if on} == {
        "under_voltage", "throttled", "under_voltage_since_boot", "throttled_since_boot"
    }  # fmt: skip
    assert throttled(tmp_path / "absent") is None


# --- the daemon against a real broker -------------------------------------------------------


def write_config(
    path: Path,
    model_dir: Path,
    state: Path,
    broker: Broker | None,
    *,
    window: float = 1.0,
    mqtt_extra: str = "",
) -> Path:
    # These tests check that every window arrives: on a loaded machine draining the spool at
    # stop can take longer than the default stop_flush_s, which would leave the rest for a next
    # start that these runs never have.
    mqtt = (
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nreconnect_min_s = 0.2\n'
        f"reconnect_max_s = 1.0\nstop_flush_s = 120\n{mqtt_extra}"
        if broker
        else ""
    )
    # The day's reset twelve hours away: a test run at 04:00 must not see the day start again.
    reset = datetime.now(timezone.utc) + timedelta(hours=12)
    path.write_text(
        f"""
[device]
id = "cam1"
site = "store1"
[analytics]
window_s = {window}
heatmap_window_s = {window * 2}
timezone = "UTC"
occupancy_reset = "{reset:%H}:00"
[telemetry]
health_interval_s = 1
[[lines]]
id = "mid"
points = [[0.0, 0.5], [1.0, 0.5]]
[[zones]]
id = "left"
kind = "display"
points = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]
[paths]
model_dir = "{model_dir}"
state_dir = "{state}"
{mqtt}
""",
        encoding="utf-8",
    )
    return path


def start_daemon(config: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        intentcam_argv("run", "--config", str(config), "--sink", "none", *args),
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


#: What ``intentcam tail`` and ``intentcam report --from mqtt://`` subscribe to by default:
#: every site and device.
EVERY_CAMERA = "intentcam/v1/+/+/#"


def start_tail(broker: Broker, *args: str) -> subprocess.Popen:
    before = broker.subscriptions(EVERY_CAMERA)
    process = subprocess.Popen(
        intentcam_argv("tail", "--broker", f"127.0.0.1:{broker.port}", "--json", *args),
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    # Subscribed before the daemon starts publishing: on a loaded machine the tail's start can
    # take longer than a fixed sleep, and messages sent before it subscribes never reach it.
    def subscribed() -> bool:
        assert process.poll() is None, process.communicate()[1]
        return broker.subscriptions(EVERY_CAMERA) > before

    assert wait_until(subscribed, timeout=60), "the tail never subscribed"
    return process


def tail_result(process: subprocess.Popen, timeout: float = 420) -> tuple[list[dict], dict, int]:
    out, err = process.communicate(timeout=timeout)
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert lines and "summary" in lines[-1], err
    return lines[:-1], lines[-1]["summary"], process.returncode


@pytest.fixture()
def broker(tmp_path: Path):
    folder = tmp_path / "broker"
    folder.mkdir()
    running = Broker(folder).start()
    yield running
    running.stop()


def test_tail_until_stopped_waits_for_every_device_heard_from() -> None:
    from intentcam.cli.tail_cmd import StoppedDevices

    def status(device: str, state: str) -> dict:
        return {"type": "status", "site": "s", "device": device, "state": state}

    devices = StoppedDevices()
    # A retained "stopped" is a device that was off before the tail started: not a stop now.
    assert not devices.all_after(status("cam1", "stopped"), retained=True)
    assert not devices.all_after(status("cam1", "online"))
    assert not devices.all_after({"type": "counts", "site": "s", "device": "cam2"})
    assert not devices.all_after(status("cam1", "stopped"))  # cam2 still runs
    assert not devices.all_after({"type": "health", "site": "s", "device": "cam1"})
    assert not devices.all_after(status("cam1", "online"))  # cam1 came back
    assert not devices.all_after(status("cam2", "stopped"))
    assert devices.all_after(status("cam1", "stopped"))
    assert not StoppedDevices().all_after(b"not json")


@pytest.mark.broker
def test_tail_is_idle_only_when_the_stream_is_quiet(tmp_path: Path, broker: Broker) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    tail = start_tail(broker, "--idle", "3", "--timeout", "120")
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()

    def publish(first: int, count: int) -> None:
        for seq in range(first, first + count):
            payload = json.dumps({"type": "counts", "seq": seq, "pad": "x" * 400})
            sent = publisher.publish("intentcam/v1/store1/cam1/counts", payload, qos=1)
            sent.wait_for_publish(10)

    try:
        # More output than a pipe holds: the tail blocks writing it while nobody reads, for
        # longer than --idle, with the rest of the messages waiting in its queue.
        publish(0, 400)
        time.sleep(5)
        # A broker restart longer than --idle: the tail reconnects and goes on.
        subscribed = broker.subscriptions(EVERY_CAMERA)
        broker.stop()
        time.sleep(5)
        broker.start()
        deadline = time.monotonic() + 30
        while not publisher.is_connected() and time.monotonic() < deadline:
            time.sleep(0.1)
        # The tail resubscribes on reconnecting (its session is not persistent).
        assert wait_until(lambda: broker.subscriptions(EVERY_CAMERA) > subscribed, timeout=60)
        publish(400, 5)
        messages, _, _ = tail_result(tail)
    finally:
        publisher.loop_stop()
    assert [m["message"]["seq"] for m in messages] == list(range(405))


@pytest.mark.broker
def test_daemon_publishes_a_schema_valid_stream(
    tmp_path: Path, model_dir: Path, broker: Broker
) -> None:
    config = write_config(tmp_path / "c.toml", model_dir, tmp_path / "state", broker)
    # The tail stops at the "stopped" status (after the last windows and the spool's drain), not
    # after a quiet spell: on a loaded machine the daemon's start or shutdown outlasted any idle
    # time chosen. The timeouts only catch a hang: a realtime run took 110 s on a machine with
    # three more busy processes than cores.
    tail = start_tail(broker, "--until-stopped", "--timeout", "400")
    daemon = start_daemon(config, "--source", str(CONCOURSE), "--realtime")
    _, stderr = daemon.communicate(timeout=300)
    assert daemon.returncode == 0, stderr
    messages, summary, code = tail_result(tail)
    assert code == 0, summary
    kinds = {m["message"]["type"] for m in messages}
    assert {"status", "counts", "heatmap", "sessions", "health"} <= kinds
    assert all(m["problems"] == [] for m in messages)
    assert all(validation_errors(m["message"]) == [] for m in messages)
    device = summary["devices"]["store1/cam1"]
    assert device["missing_count"] == 0 and device["invalid"] == 0
    states = [m["message"]["state"] for m in messages if m["message"]["type"] == "status"]
    assert states[0] == "online" and states[-1] == "stopped"
    birth = next(m["message"] for m in messages if m["message"]["type"] == "status")
    assert birth["occupancy"]["zones"] == {"left": 0} and len(birth["config_hash"]) == 16
    # Every counts window follows the previous one: nothing was skipped.
    windows = [m["message"]["window"] for m in messages if m["message"]["type"] == "counts"]
    assert all(a["end"] == b["start"] for a, b in zip(windows, windows[1:]))
    assert sum(m["message"]["frames"] for m in messages if m["message"]["type"] == "counts") == 341


@pytest.mark.broker
def test_broker_outage_loses_nothing(tmp_path: Path, model_dir: Path) -> None:
    folder = tmp_path / "broker"
    folder.mkdir()
    broker = Broker(folder, persistence=True).start()
    try:
        config = write_config(tmp_path / "c.toml", model_dir, tmp_path / "state", broker)
        # A gateway with a persistent session: it gets what was published while it was away.
        tail = start_tail(broker, "--session", "gateway-1", "--until-stopped", "--timeout", "400")
        daemon = start_daemon(config, "--source", str(CONCOURSE), "--realtime")
        time.sleep(5)
        broker.stop()
        outage_started = time.monotonic()
        time.sleep(6)  # several 1 s windows are produced while the broker is down
        broker.start()
        outage = time.monotonic() - outage_started
        _, stderr = daemon.communicate(timeout=300)
        assert daemon.returncode == 0, stderr
        messages, summary, _ = tail_result(tail)
    finally:
        broker.stop()
    device = summary["devices"]["store1/cam1"]
    assert device["missing_count"] == 0, device
    counts = [m["message"] for m in messages if m["message"]["type"] == "counts"]
    seqs = [m["seq"] for m in counts]
    assert seqs == sorted(seqs)  # replayed in order
    unique = {m["seq"]: m for m in counts}
    windows = [unique[s]["window"] for s in sorted(unique)]
    assert all(a["end"] == b["start"] for a, b in zip(windows, windows[1:]))
    # Every processed frame's window arrived: at realtime pace a loaded machine skips clip
    # frames, so the daemon's own summary says how many it processed.
    processed = int(re.search(r"intentcam: (\d+) frames in", stderr).group(1))
    assert processed > 100 and sum(unique[s]["frames"] for s in unique) == processed
    assert outage > 5 and len(windows) > outage  # windows from the outage are among them
    print(
        f"outage {outage:.1f} s: {len(windows)} counts windows, {device['received']} spooled "
        f"messages, {device['duplicates']} duplicates, 0 missing"
    )


@pytest.mark.broker
def test_sigkill_then_restart_delivers_everything_spooled(tmp_path: Path, model_dir: Path) -> None:
    folder = tmp_path / "broker"
    folder.mkdir()
    broker = Broker(folder, persistence=True)
    state = tmp_path / "state"
    config = write_config(tmp_path / "c.toml", model_dir, state, broker)
    # First run: the broker is down, so everything stays in the spool; then SIGKILL.
    daemon = start_daemon(config, "--source", str(CONCOURSE), "--realtime")
    spool = state / "spool.sqlite"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if spool.exists() and Spool(spool).stats()["depth"] >= 6:
            break
        time.sleep(0.2)
    daemon.send_signal(signal.SIGKILL)
    daemon.wait(timeout=10)
    spooled = Spool(spool).stats()["depth"]
    assert spooled >= 6
    broker.start()
    try:
        tail = start_tail(broker, "--until-stopped", "--timeout", "300")
        restarted = start_daemon(config, "--source", str(CONCOURSE), "--max-frames", "50")
        _, stderr = restarted.communicate(timeout=300)
        assert restarted.returncode == 0, stderr
        messages, summary, _ = tail_result(tail)
    finally:
        broker.stop()
    seqs = sorted(
        {
            m["message"]["seq"]
            for m in messages
            if "seq" in m["message"] and m["message"]["type"] in ("counts", "heatmap", "sessions")
        }
    )
    assert seqs[0] == 1 and seqs == list(range(1, seqs[-1] + 1))  # 1..N, nothing lost
    assert seqs[-1] > spooled
    assert Spool(spool).stats()["depth"] == 0


@pytest.mark.broker
def test_tls_client_certificates_and_password(tmp_path: Path, model_dir: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    folder = tmp_path / "broker"
    folder.mkdir()
    broker = Broker(folder, tls=pki, password_file=add_password(folder, "cam1", "pa55word"))
    broker.start()
    password_file = tmp_path / "password"
    password_file.write_text("pa55word\n")
    tls = (
        f'tls = true\nca_file = "{pki["ca"]}"\ncert_file = "{pki["client_cert"]}"\n'
        f'key_file = "{pki["client_key"]}"\nusername = "cam1"\n'
        f'password_file = "{password_file}"\n'
    )
    try:
        config = write_config(
            tmp_path / "c.toml", model_dir, tmp_path / "state", broker, mqtt_extra=tls
        )
        tail = start_tail(
            broker,
            "--tls",
            "--ca-file",
            str(pki["ca"]),
            "--cert-file",
            str(pki["client_cert"]),
            "--key-file",
            str(pki["client_key"]),
            "--username",
            "cam1",
            "--password-file",
            str(password_file),
            "--until-stopped",
            "--timeout",
            "300",
        )
        daemon = start_daemon(config, "--source", str(CONCOURSE), "--max-frames", "60")
        _, stderr = daemon.communicate(timeout=300)
        assert daemon.returncode == 0, stderr
        assert "pa55word" not in stderr
        messages, summary, code = tail_result(tail)
        assert code == 0 and {"status", "counts"} <= {m["message"]["type"] for m in messages}

        other = make_pki(tmp_path / "other", "wrong")
        wrong = subprocess.run(
            intentcam_argv(
                "tail",
                "--broker",
                f"127.0.0.1:{broker.port}",
                "--tls",
                "--ca-file",
                str(other["ca"]),
                "--timeout",
                "3",
            ),
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert wrong.returncode == 2  # cannot connect: not a verdict on the stream
        assert wrong.stderr.strip().splitlines() == [
            line
            for line in wrong.stderr.strip().splitlines()
            if line.startswith("intentcam: error:")
        ]
        assert "TLS certificate verification failed" in wrong.stderr
        assert "Traceback" not in wrong.stderr
        # The daemon with the wrong CA: a clear log line, and the data stays in the spool.
        config.write_text(config.read_text().replace(str(pki["ca"]), str(other["ca"])))
        daemon = start_daemon(config, "--source", str(CONCOURSE), "--max-frames", "30")
        _, stderr = daemon.communicate(timeout=90)
        assert daemon.returncode == 0
        assert "TLS certificate verification failed" in stderr
        assert Spool(tmp_path / "state" / "spool.sqlite").stats()["depth"] > 0
    finally:
        broker.stop()


@pytest.mark.broker
def test_mqtt_3_1_1_is_selectable(tmp_path: Path, model_dir: Path, broker: Broker) -> None:
    config = write_config(
        tmp_path / "c.toml",
        model_dir,
        tmp_path / "state",
        broker,
        mqtt_extra='protocol = "3.1.1"\n',
    )
    tail = start_tail(broker, "--protocol", "3.1.1", "--until-stopped", "--timeout", "300")
    daemon = start_daemon(config, "--source", str(CONCOURSE), "--max-frames", "40")
    _, stderr = daemon.communicate(timeout=300)
    assert daemon.returncode == 0, stderr
    messages, summary, code = tail_result(tail)
    assert code == 0, summary
    kinds = [m["message"]["type"] for m in messages]
    assert "counts" in kinds and kinds.count("status") == 2  # online, stopped


def test_date_time_fields_are_checked(tmp_path: Path, config_file) -> None:
    """The schemas' ``format: date-time`` is enforced (rfc3339-validator is a dependency): a
    gateway validating with ``intentcam.telemetry.messages`` rejects a counts message whose
    ``ts`` is not a timestamp."""
    from tests.cli import run_cli
    from tests.data import CONCOURSE

    out = tmp_path / "out.jsonl"
    result = run_cli("run", "--config", str(config_file()), "--source", str(CONCOURSE),
                     "--max-frames", "2", "--sink", f"jsonl:{out}")  # fmt: skip
    assert result.returncode == 0, result.stderr
    counts = next(r for r in map(json.loads, out.read_text().splitlines()) if r["type"] == "counts")
    assert validation_errors(counts) == []
    for bad in ({"ts": "yesterday at noon"}, {"window": {**counts["window"], "end": "2026-13-01"}}):
        problems = validation_errors({**counts, **bad})
        assert any("date-time" in problem for problem in problems), problems


@pytest.mark.broker
def test_the_last_will_after_sigkill_carries_the_inventory(
    tmp_path: Path, model_dir: Path, broker: Broker
) -> None:
    """After a crash the retained status is the last will: it must still say which firmware,
    models, config and time zone the device runs, with the boot it belongs to."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    config = write_config(tmp_path / "c.toml", model_dir, tmp_path / "state", broker)
    seen: list[dict] = []
    listener = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gateway-test")
    listener.on_message = lambda c, u, m: seen.append(json.loads(m.payload))
    listener.connect("127.0.0.1", broker.port)
    listener.subscribe("intentcam/v1/store1/cam1/#", qos=1)
    listener.loop_start()
    daemon = start_daemon(config, "--source", str(CONCOURSE), "--realtime")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(m.get("type") == "counts" for m in seen):
            time.sleep(0.2)
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=10)
        deadline = time.monotonic() + 30  # the broker notices the dead connection
        while time.monotonic() < deadline and not any(m.get("state") == "offline" for m in seen):
            time.sleep(0.2)
    finally:
        listener.loop_stop()
        listener.disconnect()
    will = next(m for m in seen if m.get("state") == "offline")
    assert validation_errors(will) == []
    assert will["firmware"] and will["models"] and will["config_hash"] and will["tz"]
    assert "seq" in will and "ts" in will
    boots = {m["boot_id"] for m in seen}
    assert boots == {will["boot_id"]}, "every message of this run carries its boot id"
    assert all(validation_errors(m) == [] for m in seen if m.get("type") != "reply")

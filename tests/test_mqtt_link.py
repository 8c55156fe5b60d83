"""An MQTT link that never dies silently: TLS file problems and refusals are retried with
backoff, said once with the reason, reported in health, and the link recovers when fixed."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from intentcam.capture.files import VideoFileSource
from intentcam.config import load_config
from intentcam.sinks import NullSink
from intentcam.telemetry.consumer import describe
from intentcam.telemetry.health import HealthMonitor
from intentcam.telemetry.messages import envelope, validation_errors
from intentcam.telemetry.service import Telemetry
from tests.brokers import Broker, add_password, make_pki, subscribe, subscriber
from tests.data import CONCOURSE
from tests.waiting import wait_until

pytestmark = pytest.mark.broker


def telemetry_for(tmp_path: Path, port: int, **mqtt: Any) -> Telemetry:
    settings = load_config(
        None,
        overrides={
            "device": {"id": "cam1", "site": "s1"},
            "mqtt": {"host": "127.0.0.1", "port": port, "reconnect_min_s": 0.2,
                     "reconnect_max_s": 2.0, **mqtt},
            "paths": {"state_dir": str(tmp_path / "state")},
        },
    )  # fmt: skip
    return Telemetry(settings, NullSink())


def test_a_missing_ca_file_is_retried_reported_and_recovers(tmp_path: Path, caplog: Any) -> None:
    pki = make_pki(tmp_path / "pki")
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker", tls=pki).start()
    rotated = tmp_path / "rotating" / "ca.pem"  # not there yet: a rotation in progress
    telemetry = telemetry_for(
        tmp_path, broker.port, tls=True, ca_file=str(rotated),
        cert_file=str(pki["client_cert"]), key_file=str(pki["client_key"]), tls_insecure=True,
    )  # fmt: skip
    link = telemetry.link
    assert link is not None
    try:
        with caplog.at_level(logging.DEBUG, logger="intentcam.telemetry.mqtt"):
            telemetry.start()
            assert wait_until(lambda: link.attempts >= 3, 20)
        assert link._thread.is_alive(), "the network thread must survive a missing TLS file"
        assert "TLS file missing" in telemetry.broker_error
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "retrying with backoff" in errors[0].getMessage()
        rotated.parent.mkdir()
        shutil.copyfile(pki["ca"], rotated)
        assert wait_until(lambda: telemetry.broker_connected, 20), telemetry.broker_error
        assert telemetry.broker_error == ""
    finally:
        telemetry.stop()
        broker.stop()


def test_refusals_back_off_and_say_why(tmp_path: Path) -> None:
    (tmp_path / "broker").mkdir()
    folder = tmp_path / "broker"
    broker = Broker(folder, password_file=add_password(folder, "cam1", "right")).start()
    telemetry = telemetry_for(tmp_path, broker.port, username="cam1", password="wrong")
    link = telemetry.link
    assert link is not None
    try:
        telemetry.start()
        time.sleep(5)
        # Without backoff this would be ~25 attempts (one per 0.2 s); doubling to 2 s: ~6.
        assert 2 <= link.attempts <= 8, link.attempts
        assert "broker refused the connection" in telemetry.broker_error
        assert "password" in telemetry.broker_error
    finally:
        telemetry.stop()
        broker.stop()


def test_a_plain_client_on_a_tls_port_is_told_so(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker", tls=pki).start()
    telemetry = telemetry_for(tmp_path, broker.port)
    try:
        telemetry.start()
        assert wait_until(lambda: bool(telemetry.link and telemetry.link.last_error), 15)
        assert "TLS port" in telemetry.broker_error or "tls" in telemetry.broker_error.lower()
    finally:
        telemetry.stop()
        broker.stop()


def test_a_dead_network_thread_is_restarted(tmp_path: Path) -> None:
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker").start()
    telemetry = telemetry_for(tmp_path, broker.port)
    link = telemetry.link
    assert link is not None
    try:
        assert link.supervise() is True  # never started (a crashed thread looks the same)
        assert wait_until(lambda: telemetry.broker_connected, 15)
        assert link.supervise() is False and link.restarts == 1
    finally:
        telemetry.stop()
        broker.stop()


def test_a_stop_before_the_spool_drains_keeps_the_rest_for_the_next_start(tmp_path: Path) -> None:
    """``stop_flush_s`` bounds the drain at stop; what it leaves goes at the next start."""
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker").start()
    received: list[int] = []
    first = telemetry_for(tmp_path, broker.port, stop_flush_s=0)
    gateway = subscriber(broker.port, first.topics.of("event"), received, "gateway")
    try:
        for number in range(2000):  # queued before the link starts: all waiting at once
            first.write({"type": "event", "event": "line_in", "at": "2026-11-22T10:00:00Z",
                         "line": "door", "n": number})  # fmt: skip
        first.start()
        assert wait_until(lambda: first.broker_connected, 15)
        first.stop()
        second = telemetry_for(tmp_path, broker.port)  # the next start, same spool
        left = second.spool.stats()["depth"]
        assert left > 0, "stop_flush_s = 0 waited for the whole spool"
        second.start()
        assert wait_until(lambda: len(set(received)) == 2000, 120), f"{len(set(received))} of 2000"
        second.stop()
        assert sorted(set(received)) == list(range(min(received), min(received) + 2000))
    finally:
        gateway.loop_stop()
        gateway.disconnect()
        broker.stop()


def alerting_telemetry(tmp_path: Path, port: int, deliver_within_s: float) -> Telemetry:
    """Telemetry of a camera with a queue alert rule, its alerts good for ``deliver_within_s``."""
    settings = load_config(
        None,
        overrides={
            "device": {"id": "cam1", "site": "s1"},
            "mqtt": {"host": "127.0.0.1", "port": port, "reconnect_min_s": 0.2,
                     "reconnect_max_s": 1.0},
            "paths": {"state_dir": str(tmp_path / "state")},
            "zones": [{"id": "tills", "kind": "queue", "points": [[0, 0], [1, 0], [1, 1]]}],
            "alerts": {"deliver_within_s": deliver_within_s,
                       "rules": [{"id": "queue", "kind": "long_queue"}]},
        },
    )  # fmt: skip
    return Telemetry(settings, NullSink())


def alert(alert_id: str) -> dict[str, Any]:
    return {"type": "alert", "alert_id": alert_id, "rule": "queue", "kind": "long_queue",
            "zone": "tills", "reason": "5 people in tills for 60 s", "at": "2026-11-24T10:00:00Z",
            "people": 5, "for_s": 60.0}  # fmt: skip


def staff_app(port: int, topic: str) -> tuple[mqtt.Client, list[tuple[dict[str, Any], int | None]]]:
    """A staff app's MQTT 5 client with a session the broker keeps while it is away; returns
    it and the (message, message expiry interval) of each alert it gets."""
    got: list[tuple[dict[str, Any], int | None]] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="staff-app", protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, m: got.append(
        (json.loads(m.payload), getattr(m.properties, "MessageExpiryInterval", None))
    )
    session = Properties(PacketTypes.CONNECT)
    session.SessionExpiryInterval = 600
    client.connect("127.0.0.1", port, clean_start=False, properties=session)
    client.loop_start()
    assert subscribe(client, [topic]) == [1]
    return client, got


def test_an_alert_raised_while_the_broker_is_away_goes_out_when_it_is_back(
    tmp_path: Path, caplog: Any
) -> None:
    """Within ``alerts.deliver_within_s`` an alert waits for the broker, carrying the time it
    has left as its MQTT 5 expiry; a daemon stopping with alerts still waiting says so."""
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker", persistence=True).start()
    telemetry = alerting_telemetry(tmp_path, broker.port, deliver_within_s=60)
    app, got = staff_app(broker.port, telemetry.topics.of("alert"))
    try:
        telemetry.start()
        assert wait_until(lambda: telemetry.broker_connected, 15)
        broker.stop()
        assert wait_until(lambda: not telemetry.broker_connected, 15)
        telemetry.write(alert("0000000a"))
        time.sleep(1.0)
        broker.start()  # the staff app's session and subscription come back from persistence
        assert wait_until(lambda: len(got) == 1, 30), "the alert raised while away never came"
        message, expiry = got[0]
        assert message["alert_id"] == "0000000a" and not validation_errors(message)
        assert expiry is not None and 1 <= expiry < 60, expiry  # a second or more went by
        assert telemetry.alert_delivery() == {"fired": 1, "expired": 0}
        broker.stop()
        assert wait_until(lambda: not telemetry.broker_connected, 15)
        telemetry.write(alert("0000000b"))
        with caplog.at_level(logging.WARNING, logger="intentcam.telemetry.mqtt"):
            telemetry.stop()
        assert "1 alert message(s) not delivered" in caplog.text
    finally:
        app.loop_stop()
        app.disconnect()
        broker.stop()


def test_an_alert_older_than_deliver_within_s_is_dropped_logged_and_counted(
    tmp_path: Path, caplog: Any
) -> None:
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker").start()
    telemetry = alerting_telemetry(tmp_path, broker.port, deliver_within_s=1)
    app, got = staff_app(broker.port, telemetry.topics.of("alert"))
    try:
        telemetry.write(alert("0000000a"))  # the link is not up yet: as good as a broker away
        time.sleep(1.5)
        with caplog.at_level(logging.WARNING, logger="intentcam.telemetry.mqtt"):
            telemetry.start()
            assert wait_until(lambda: telemetry.broker_connected, 15)
            telemetry.write(alert("0000000b"))
            assert wait_until(lambda: len(got) == 1, 15)
        assert [message["alert_id"] for message, _ in got] == ["0000000b"]
        assert telemetry.alert_delivery() == {"fired": 2, "expired": 1}
        assert "an alert waited too long for the broker and is dropped" in caplog.text
        # ... and the health message says so, as its schema has it.
        source = VideoFileSource(CONCOURSE)
        try:
            body = HealthMonitor().body(
                0,
                spool=telemetry.spool.stats(),
                source=source,
                broker=True,
                models=[],
                alerts=telemetry.alert_delivery(),
            )
        finally:
            source.close()
        health = envelope("health", "cam1", "s1", body, 1, boot_id=telemetry.boot_id)
        assert health["alerts"] == {"fired": 2, "expired": 1} and not validation_errors(health)
        assert describe(health).endswith("alerts 2 (1 expired)")  # intentcam tail's line
    finally:
        telemetry.stop()
        app.loop_stop()
        app.disconnect()
        broker.stop()

"""An MQTT link that never dies silently: TLS file problems and refusals are retried with
backoff, said once with the reason, reported in health, and the link recovers when fixed."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from intentcam.config import load_config
from intentcam.sinks import NullSink
from intentcam.telemetry.service import Telemetry
from tests.brokers import Broker, add_password, make_pki, subscriber
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

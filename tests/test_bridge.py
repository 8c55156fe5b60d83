"""Store-to-cloud on existing brokers: the shipped bridge config between two real Mosquitto
instances survives a network cut with nothing lost, and two gateway consumers share the load
through an MQTT 5 shared subscription, each message processed once."""

from __future__ import annotations

import getpass
import json
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.brokers import MOSQUITTO, Broker, free_port, subscriber
from tests.data import ROOT

BRIDGE = ROOT / "provisioning" / "mosquitto" / "bridge.conf"


class CuttableLink:
    """A TCP relay on loopback standing in for the store's uplink; ``cut`` drops every
    connection and refuses new ones until ``restore``."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self.up = threading.Event()
        self.up.set()
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.up.clear()
        with self._lock:
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._open.clear()

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self.cut()
        self._listener.close()


def store_broker_config(folder: Path, port: int, central_port: int) -> Path:
    """The shipped bridge config, aimed at the relay, without TLS (loopback test)."""
    bridge = [
        line
        for line in BRIDGE.read_text(encoding="utf-8").splitlines()
        if not line.startswith(("bridge_cafile", "bridge_certfile", "bridge_keyfile"))
    ]
    bridge = [
        f"address 127.0.0.1:{central_port}" if line.startswith("address ") else line
        for line in bridge
    ]
    lines = [f"user {getpass.getuser()}", "per_listener_settings false", f"listener {port} 127.0.0.1",
             "allow_anonymous true", "persistence false", "max_queued_messages 100000",
             f"log_dest file {folder / 'store.log'}", *bridge]  # fmt: skip
    path = folder / "store.conf"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


@pytest.mark.broker
def test_a_cut_uplink_loses_nothing_through_the_bridge(tmp_path: Path) -> None:
    central = Broker(tmp_path / "central")
    central.folder.mkdir()
    central.start()
    uplink = CuttableLink(central.port)
    store_port = free_port()
    store = subprocess.Popen(
        [MOSQUITTO, "-c", str(store_broker_config(tmp_path, store_port, uplink.port))],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    received: list[int] = []
    clients = []
    try:
        wait_for_port(store_port)
        clients.append(subscriber(central.port, "stores/store-12/intentcam/v1/#", received, "hq"))
        camera = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="cam-door")
        camera.connect("127.0.0.1", store_port)
        camera.loop_start()
        clients.append(camera)
        deadline = time.monotonic() + 15  # until the bridge is up: the first message arrives
        while not received and time.monotonic() < deadline:
            camera.publish("intentcam/v1/store-12/cam-door/counts", json.dumps({"seq": 0}), qos=1)
            time.sleep(0.3)
        assert received, "the bridge never connected"
        sent = []
        for seq in range(1, 301):
            if seq == 101:
                uplink.cut()  # the store's internet goes away for 4 s
            if seq == 201:
                uplink.restore()
            camera.publish("intentcam/v1/store-12/cam-door/counts", json.dumps({"seq": seq}),
                           qos=1).wait_for_publish(5)  # fmt: skip
            sent.append(seq)
            time.sleep(0.02 if seq <= 100 or seq > 200 else 0.04)
        deadline = time.monotonic() + 30
        while not set(sent) <= set(received) and time.monotonic() < deadline:
            time.sleep(0.2)
        missing = sorted(set(sent) - set(received))
        assert not missing, f"lost through the bridge: {missing[:20]} ({len(missing)})"
    finally:
        for client in clients:
            client.loop_stop()
            client.disconnect()
        uplink.close()
        store.terminate()
        store.wait(timeout=10)
        central.stop()


@pytest.mark.broker
def test_two_gateways_share_the_stream_each_message_once(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    broker.start()
    first: list[int] = []
    second: list[int] = []
    clients = [
        subscriber(broker.port, "$share/gateways/intentcam/v1/#", first, "gateway-1"),
        subscriber(broker.port, "$share/gateways/intentcam/v1/#", second, "gateway-2"),
    ]
    try:
        camera = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="cam-door")
        camera.connect("127.0.0.1", broker.port)
        camera.loop_start()
        clients.append(camera)
        for seq in range(1, 201):
            camera.publish("intentcam/v1/store-12/cam-door/counts", json.dumps({"seq": seq}),
                           qos=1).wait_for_publish(5)  # fmt: skip
        deadline = time.monotonic() + 10
        while len(first) + len(second) < 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sorted(first + second) == list(range(1, 201)), "each message exactly once"
        assert first and second, "both gateways took a share"
    finally:
        for client in clients:
            client.loop_stop()
            client.disconnect()
        broker.stop()

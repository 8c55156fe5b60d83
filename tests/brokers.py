"""A real Mosquitto broker on a free loopback port, started and stopped by the tests."""

from __future__ import annotations

import datetime
import getpass
import ipaddress
import json
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Broker:
    folder: Path
    port: int = field(default_factory=free_port)
    persistence: bool = False
    tls: dict[str, Path] | None = None
    password_file: Path | None = None
    process: subprocess.Popen | None = None

    def config(self) -> Path:
        # As root, mosquitto would switch to the 'mosquitto' user and could not write its
        # persistence file or log in the test's folder.
        lines = [f"user {getpass.getuser()}", f"listener {self.port} 127.0.0.1"]
        if self.tls:
            lines += [
                f"cafile {self.tls['ca']}",
                f"certfile {self.tls['cert']}",
                f"keyfile {self.tls['key']}",
                "require_certificate true",
                "tls_version tlsv1.2",
            ]
        if self.password_file:
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
        else:
            lines += ["allow_anonymous true"]
        if self.persistence:
            lines += [
                "persistence true",
                f"persistence_location {self.folder}/",
                "autosave_interval 1",
            ]
        else:
            lines += ["persistence false"]
        lines += ["max_queued_messages 100000", f"log_dest file {self.folder / 'mosquitto.log'}"]
        # One type per line (Mosquitto 2.0 reads only the first of several); subscriptions too,
        # so that a test can wait for another process to have subscribed (:meth:`subscriptions`).
        kinds = ("error", "warning", "notice", "information", "subscribe")
        lines += [f"log_type {kind}" for kind in kinds]
        path = self.folder / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def start(self) -> Broker:
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config())], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.process.stderr.read().decode()}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def subscriptions(self, topic: str) -> int:
        """How many times a client has subscribed to ``topic`` (as written in its SUBSCRIBE)."""
        log = self.folder / "mosquitto.log"
        lines = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        return sum(line.endswith(f" {topic}") for line in lines.splitlines())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: mosquitto saves its persistence file
            self.process.wait(timeout=10)
        self.process = None


def subscribe(client: mqtt.Client, topics: list[str], timeout: float = 30.0) -> list[int]:
    """Subscribe a running client to ``topics`` (QoS 1) and return, once the broker has
    acknowledged them (a message sent to us before that would be lost), its reason code for
    each: the QoS granted, or 128 and up for a refusal."""
    acknowledged: dict[int, list[int]] = {}
    arrived = threading.Condition()

    def on_subscribe(
        client: mqtt.Client, userdata: object, mid: int, codes: list, _: object
    ) -> None:
        with arrived:
            acknowledged[mid] = [int(code.value) for code in codes]
            arrived.notify_all()

    client.on_subscribe = on_subscribe
    _, mid = client.subscribe([(topic, 1) for topic in topics])
    with arrived:
        assert arrived.wait_for(lambda: mid in acknowledged, timeout), f"no SUBACK for {topics}"
        return acknowledged[mid]


def add_password(folder: Path, user: str, password: str) -> Path:
    path = folder / "passwords"
    subprocess.run(
        [MOSQUITTO_PASSWD, "-b", "-c", str(path), user, password], check=True, capture_output=True
    )
    path.chmod(0o600)
    return path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def make_pki(folder: Path, name: str = "test") -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, as files."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{name} CA"))
        .issuer_name(_name(f"{name} CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(common: str, server: bool) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return builder.sign(ca_key, hashes.SHA256()), key

    server, server_key = leaf("localhost", True)
    client, client_key = leaf("cam1", False)
    return {
        "ca": _write_cert(ca, folder / "ca.pem"),
        "cert": _write_cert(server, folder / "server.pem"),
        "key": _write_key(server_key, folder / "server.key"),
        "client_cert": _write_cert(client, folder / "client.pem"),
        "client_key": _write_key(client_key, folder / "client.key"),
    }


def subscriber(port: int, topic: str, received: list[int], client_id: str) -> mqtt.Client:
    """A QoS 1 MQTT 5 subscriber on the loopback broker at ``port`` that appends each message's
    ``seq`` to ``received``; returned once the subscription is in place."""
    ready = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, m: received.append(json.loads(m.payload)["seq"])
    client.on_subscribe = lambda *args: ready.set()
    client.on_connect = lambda c, u, f, code, p: c.subscribe(topic, options=SubscribeOptions(qos=1))
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert ready.wait(10)
    return client

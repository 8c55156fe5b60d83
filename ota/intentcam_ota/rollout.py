"""Staged rollouts over MQTT for fleets without a rollout server.

Devices are found from their retained ``status`` (or named). Rings go one after the other (for
example one device, then 10 %, then all): every device of a ring gets the ``ota_install`` command,
and the ring ends when each has reached a final ``ota`` state (committed, failed, rolled_back) or
the timeout. When the failures so far exceed the error threshold, the rollout stops and the
remaining devices are left alone (hawkBit's emergency stop).
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

FINAL = ("committed", "failed", "rolled_back")


@dataclass
class DeviceResult:
    device: str
    ring: int
    state: str = "pending"
    version: str | None = None
    reason: str | None = None


def ring_sizes(spec: str, total: int) -> list[int]:
    """``"1,10%,100%"`` -> cumulative device counts per ring for ``total`` devices."""
    sizes = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if part.endswith("%"):
            count = math.ceil(total * float(part[:-1]) / 100)
        else:
            count = int(part)
        if count < 1:
            raise ValueError(f"ring {part!r} has no device")
        sizes.append(min(count, total))
    if not sizes or sizes[-1] < total:
        sizes.append(total)
    return sorted(set(sizes))


@dataclass
class Rollout:
    client: mqtt.Client
    root: str
    site: str
    url: str
    sha256: str
    error_threshold: float = 0.2
    ring_timeout_s: float = 900.0
    results: dict[str, DeviceResult] = field(default_factory=dict)
    online: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _changed: threading.Condition = field(init=False)
    _sent: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._changed = threading.Condition(self._lock)

    def on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        parts = message.topic.split("/")
        if len(parts) < 2:
            return
        try:
            body = json.loads(message.payload)
        except ValueError:
            return
        device, kind = parts[-2], parts[-1]
        if kind == "reply" and len(parts) >= 4:
            device = parts[-4]
        with self._changed:
            if kind == "status" and body.get("state") in ("online", "degraded"):
                self.online.add(device)
            elif kind == "status":
                self.online.discard(device)
            result = self.results.get(device)
            if result is None or device not in self._sent:
                self._changed.notify_all()
                return
            if kind == "reply" and body.get("command") == "ota_install" and not body.get("ok"):
                result.state, result.reason = "failed", str(body.get("error"))
            elif kind == "ota" and not message.retain and body.get("state") in FINAL:
                result.state = body["state"]
                result.reason = body.get("reason")
                result.version = (body.get("current") or {}).get("version")
            elif kind == "ota" and not message.retain and result.state == "sent":
                result.state = "installing"
            self._changed.notify_all()

    def discover(self, wait_s: float) -> list[str]:
        """Devices whose retained status says online, after ``wait_s`` seconds of listening."""
        time.sleep(wait_s)
        with self._lock:
            return sorted(self.online)

    def run(self, devices: list[str], rings: list[int]) -> bool:
        """Roll out ring by ring; False when stopped at the error threshold."""
        for index, device in enumerate(devices):
            ring = next(i for i, size in enumerate(rings) if index < size)
            self.results[device] = DeviceResult(device, ring + 1)
        start = 0
        for end in rings:
            batch = devices[start:end]
            start = end
            for device in batch:
                self._send(device)
            self._wait(batch)
            done = [r for r in self.results.values() if r.state not in ("pending",)]
            failed = [r for r in done if r.state != "committed"]
            if done and len(failed) / len(done) > self.error_threshold:
                for result in self.results.values():
                    if result.state == "pending":
                        result.state, result.reason = "skipped", "rollout stopped"
                return False
        return True

    def _send(self, device: str) -> None:
        topic = f"{self.root}/{self.site}/{device}/cmd/ota_install"
        payload = {"id": uuid.uuid4().hex[:12], "url": self.url, "sha256": self.sha256}
        with self._lock:
            self._sent[device] = time.monotonic()
            self.results[device].state = "sent"
        self.client.publish(topic, json.dumps(payload), qos=1)

    def _wait(self, batch: list[str]) -> None:
        deadline = time.monotonic() + self.ring_timeout_s
        with self._changed:
            while any(self.results[d].state not in FINAL for d in batch):
                left = deadline - time.monotonic()
                if left <= 0:
                    for device in batch:
                        result = self.results[device]
                        if result.state not in FINAL:
                            result.state, result.reason = "failed", "timed out"
                    return
                self._changed.wait(min(left, 1.0))


def subscribe(client: mqtt.Client, root: str, site: str) -> None:
    for kind in ("status", "ota", "cmd/ota_install/reply"):
        client.subscribe(f"{root}/{site}/+/{kind}", qos=1)

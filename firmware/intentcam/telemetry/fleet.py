"""The fleet inventory: one row per device from its retained ``status``, ``health`` and ``ota``.

Every camera keeps its latest ``status``, ``health`` and ``ota`` retained on the broker, so a
subscriber learns the whole fleet at once. A device needs attention when its status is not
``online`` (``degraded``, ``offline`` after a crash, ``stopped``) or when its latest health is older
than ``stale_after_s`` (it hangs, or its link is down while the broker still holds its birth).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from intentcam.records import wall_of

#: The message types the inventory reads, by the last part of their topic.
READ = ("status", "health", "ota")


def _age_s(ts: Any, now: float) -> float | None:
    try:
        return round(now - wall_of(str(ts)), 1)
    except ValueError:
        return None


@dataclass
class DeviceRow:
    """What the inventory says of one device."""

    site: str
    device: str
    state: str = "unknown"
    verdict: str = "ok"
    #: Why the verdict is not ``ok`` ("" when it is).
    why: str = ""
    last_seen_s: float | None = None
    firmware: str = ""
    models: str = ""
    config_hash: str = ""
    fps: float | None = None
    temperature_c: float | None = None
    throttled: list[str] = field(default_factory=list)
    spool_depth: int | None = None
    ota: str = ""
    #: Staff alerts of this run the broker could not take in time (health ``alerts.expired``).
    alerts_expired: int | None = None


@dataclass
class Inventory:
    """Collects the retained messages of many devices and judges each one."""

    latest: dict[tuple[str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)

    def add(self, topic: str, payload: bytes) -> None:
        """One received message (malformed or foreign ones are ignored)."""
        kind = topic.rsplit("/", 1)[-1]
        if kind not in READ or not payload:
            return
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if not isinstance(message, dict) or message.get("type") != kind:
            return
        key = (str(message.get("site", "?")), str(message.get("device", "?")))
        self.latest.setdefault(key, {})[kind] = message

    def rows(self, now: float, stale_after_s: float) -> list[DeviceRow]:
        """One row per device, sorted by site and device."""
        return [self._row(key, now, stale_after_s) for key in sorted(self.latest)]

    def _row(self, key: tuple[str, str], now: float, stale_after_s: float) -> DeviceRow:
        site, device = key
        found = self.latest[key]
        status, health, ota = (found.get(kind, {}) for kind in READ)
        row = DeviceRow(site, device, state=str(status.get("state", "unknown")))
        row.firmware = str(status.get("firmware", ""))
        row.models = ", ".join(
            f"{m.get('id')} {m.get('version')}"
            for m in status.get("models", [])
            if isinstance(m, dict)
        )
        row.config_hash = str(status.get("config_hash", ""))
        row.ota = str(ota.get("state", (status.get("ota") or {}).get("state", "")))
        if health:
            row.last_seen_s = _age_s(health.get("ts"), now)
            row.fps = health.get("fps")
            row.temperature_c = health.get("temperature_c")
            flags = health.get("throttled") or {}
            row.throttled = sorted(name for name, on in flags.items() if on)
            row.spool_depth = (health.get("spool") or {}).get("depth")
            row.alerts_expired = (health.get("alerts") or {}).get("expired")
        elif status:
            row.last_seen_s = _age_s(status.get("ts"), now)
        reasons = []
        if row.state != "online":
            reasons.append(
                f"status {row.state}" + (f": {status['reason']}" if status.get("reason") else "")
            )
        if row.state in ("online", "degraded") and (
            row.last_seen_s is None or row.last_seen_s > stale_after_s
        ):
            seen = "never" if row.last_seen_s is None else f"{row.last_seen_s:.0f} s ago"
            reasons.append(f"stale: last health {seen}")
        if reasons:
            row.verdict = "stale" if any(r.startswith("stale") for r in reasons) else row.state
            row.why = "; ".join(reasons)
        return row


def as_json(rows: list[DeviceRow]) -> list[dict[str, Any]]:
    return [asdict(row) for row in rows]


def table(rows: list[DeviceRow]) -> str:
    """The inventory as an aligned text table."""
    header = ("SITE/DEVICE", "VERDICT", "STATE", "SEEN", "FIRMWARE", "MODELS", "CONFIG", "FPS",
              "TEMP", "THROTTLED", "SPOOL", "OTA")  # fmt: skip

    def cell(value: Any, unit: str = "") -> str:
        return "-" if value in (None, "", []) else f"{value}{unit}"

    body = [
        (
            f"{row.site}/{row.device}",
            row.verdict,
            row.state,
            cell(row.last_seen_s, " s"),
            cell(row.firmware),
            cell(row.models),
            cell(row.config_hash),
            cell(row.fps),
            cell(row.temperature_c, " C"),
            cell(",".join(row.throttled)),
            cell(row.spool_depth),
            cell(row.ota),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip()
             for line in [header, *body]]  # fmt: skip
    lines += [f"{row.site}/{row.device}: {row.why}" for row in rows if row.why]
    # Not a verdict (the outage may be over), but the staff missed these alerts.
    lines += [f"{row.site}/{row.device}: {row.alerts_expired} staff alert(s) expired undelivered"
              for row in rows if row.alerts_expired]  # fmt: skip
    return "\n".join(lines)

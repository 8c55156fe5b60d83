"""Health: per-stage timings, fps, CPU, memory, temperature and throttling of the device."""

from __future__ import annotations

import json
import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from intentcam.durable import atomic_write

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")
#: Raspberry Pi firmware's throttling flags (under-voltage, frequency capped, throttled, ...).
PI_THROTTLED = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")


@dataclass
class StageTimings:
    """Rolling milliseconds per pipeline stage (the last ``size`` frames)."""

    size: int = 600
    _samples: dict[str, deque[float]] = field(default_factory=dict)

    def add(self, stage: str, milliseconds: float) -> None:
        samples = self._samples.get(stage)
        if samples is None:
            samples = self._samples[stage] = deque(maxlen=self.size)
        samples.append(milliseconds)

    def summary(self) -> dict[str, dict[str, float]]:
        """``{stage: {p50, p95}}`` in milliseconds."""
        result = {}
        for stage, samples in self._samples.items():
            if samples:
                values = np.fromiter(samples, dtype=np.float64)
                result[stage] = {
                    "p50": round(float(np.percentile(values, 50)), 2),
                    "p95": round(float(np.percentile(values, 95)), 2),
                }
        return result


def _process_status_mb(field: str) -> float | None:
    """A memory line of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in MB; ``None`` off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """Resident memory now (Linux), else the peak reported by getrusage."""
    now = _process_status_mb("VmRSS")
    if now is not None:
        return now
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def peak_rss_mb() -> float | None:
    """This process image's peak resident memory (Linux ``VmHWM``), ``None`` elsewhere.

    Unlike ``getrusage``'s ``ru_maxrss`` it starts afresh at ``exec``: a daemon started by a big
    parent (the benchmark) is not charged for the parent's pages.
    """
    return _process_status_mb("VmHWM")


def temperature_c(path: Path = THERMAL_ZONE) -> float | None:
    try:
        return round(int(path.read_text().strip()) / 1000, 1)
    except (OSError, ValueError):
        return None


#: Bits of the Pi firmware's ``get_throttled`` word: the low ones are "now", the same flag 16
#: bits up is "since boot" (``vcgencmd get_throttled`` documents the same layout).
THROTTLE_BITS = {
    "under_voltage": 0,
    "frequency_capped": 1,
    "throttled": 2,
    "soft_temperature_limit": 3,
}


def decode_throttled(word: int) -> dict[str, bool]:
    """The named flags of a ``get_throttled`` word: each now, and ``<flag>_since_boot``."""
    flags = {name: bool(word >> bit & 1) for name, bit in THROTTLE_BITS.items()}
    flags.update({f"{name}_since_boot": bool(word >> (bit + 16) & 1)
                  for name, bit in THROTTLE_BITS.items()})  # fmt: skip
    return flags


def throttled(path: Path = PI_THROTTLED) -> dict[str, bool] | None:
    """The Pi's throttling flags by name (all false = fine); ``None`` where there are none."""
    try:
        return decode_throttled(int(path.read_text().strip(), 16))
    except (OSError, ValueError):
        return None


@dataclass
class HealthMonitor:
    """Builds the body of a ``health`` message from what the loop measured since the last one."""

    timings: StageTimings = field(default_factory=StageTimings)
    started: float = field(default_factory=time.monotonic)
    _last_wall: float = field(default_factory=time.monotonic)
    _last_cpu: float = field(default_factory=time.process_time)
    _frames_at_last: int = 0

    def body(
        self,
        frames: int,
        *,
        spool: dict[str, int],
        source: Any,
        broker: bool,
        models: list[dict[str, Any]],
        broker_error: str = "",
        alerts: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        now, cpu = time.monotonic(), time.process_time()
        elapsed = max(now - self._last_wall, 1e-9)
        fps = (frames - self._frames_at_last) / elapsed
        cpu_percent = (cpu - self._last_cpu) / elapsed * 100 / max(os.cpu_count() or 1, 1)
        self._last_wall, self._last_cpu, self._frames_at_last = now, cpu, frames
        return {
            "fps": round(fps, 2),
            "stages": self.timings.summary(),
            "cpu_percent": round(cpu_percent, 1),
            "rss_mb": rss_mb(),
            "temperature_c": temperature_c(),
            "throttled": throttled(),
            "spool": spool,
            "source": {
                "state": source.stats.state,
                "dropped": source.stats.dropped,
                "reconnects": source.stats.reconnects,
                "errors": source.stats.errors,
            },
            "broker": "connected" if broker else "disconnected",
            **({"broker_error": broker_error} if broker_error and not broker else {}),
            **({"alerts": alerts} if alerts is not None else {}),
            "models": models,
            "uptime_s": round(now - self.started, 1),
        }


#: The latest health report of a running daemon, in ``paths.runtime``, for ``intentcam check``.
HEALTH_FILE = "health.json"


@dataclass(frozen=True)
class HealthReport:
    """What the daemon last wrote to its health file: the ``health`` body, its status and when."""

    written: float
    pid: int
    state: str
    reason: str
    health: dict[str, Any]

    def age_s(self, now: float | None = None) -> float:
        return max((time.time() if now is None else now) - self.written, 0.0)


def write_health_file(folder: Path, report: HealthReport) -> None:
    """Replace the health file; a storage fault is the caller's to log."""
    atomic_write(folder / HEALTH_FILE, json.dumps(asdict(report)).encode("utf-8"))


def read_health_file(folder: Path) -> HealthReport | None:
    """The last report, or ``None`` if there is none or it is unreadable."""
    try:
        data = json.loads((folder / HEALTH_FILE).read_text(encoding="utf-8"))
        return HealthReport(
            written=float(data["written"]),
            pid=int(data["pid"]),
            state=str(data["state"]),
            reason=str(data["reason"]),
            health=dict(data["health"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None

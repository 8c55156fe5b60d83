"""``intentcam check --walk N``: the installer walks through the door and sees it counted.

The camera runs for N seconds through the daemon's own pipeline (its detector, tracker and
analytics, the lines and zones that count: live ones saved by ``set_zones`` win over the file),
and every line crossing and zone entry is reported the moment it happens, token-free: when, which
line or zone, which direction. Nothing is spooled or published. A recording (``--source
clip.mp4``) plays at its own frame rate, so N seconds mean the same as on a camera.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from intentcam.analytics.scene import FrameEvents
from intentcam.capture import detect_kind, open_source
from intentcam.config import Settings, with_sections
from intentcam.control.geometry_store import counting_geometry
from intentcam.pipeline import build_pipeline
from intentcam.sinks import NullSink


@dataclass(frozen=True)
class WalkEvent:
    """One crossing (``line``, with ``direction`` in or out) or zone entry (``zone``)."""

    at_s: float
    kind: str
    id: str
    direction: str | None = None

    def describe(self) -> str:
        what = (
            f"line {self.id}: {self.direction}"
            if self.kind == "line"
            else f"zone {self.id}: entered"
        )
        return f"{self.at_s:6.1f} s  {what}"


@dataclass
class WalkReport:
    seconds: float
    frames: int = 0
    lines: dict[str, dict[str, int]] = field(default_factory=dict)
    zones: dict[str, int] = field(default_factory=dict)
    events: list[WalkEvent] = field(default_factory=list)
    geometry: str = "config"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def walk(
    settings: Settings, seconds: float, report: Callable[[WalkEvent], None] = lambda e: None
) -> WalkReport:
    """Run the camera for ``seconds``; ``report`` is called with each event as it happens."""
    settings, whose = counting_geometry(settings)
    if settings.camera.kind == "file" or (
        settings.camera.kind == "auto" and detect_kind(settings.camera.source) == "file"
    ):
        settings = with_sections(settings, camera={"pace": "realtime"})
    result = WalkReport(seconds, geometry=whose)
    result.lines = {line.id: {"in": 0, "out": 0} for line in settings.lines}
    result.zones = {zone.id: 0 for zone in settings.zones}
    origin: list[float] = []

    def on_events(timestamp: float, events: FrameEvents) -> None:
        origin[:] = origin or [timestamp]
        at = round(timestamp - origin[0], 1)
        happened = [WalkEvent(at, "line", c.line, c.direction) for c in events.crossings]
        happened += [WalkEvent(at, "zone", zone) for zone in events.entries]
        for event in happened:
            if event.kind == "line" and event.direction is not None:
                result.lines[event.id][event.direction] += 1
            elif event.kind == "zone":
                result.zones[event.id] += 1
            result.events.append(event)
            report(event)

    stop = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        if time.monotonic() - started >= seconds:
            stop.set()

    source = open_source(settings.camera)
    try:
        pipeline = build_pipeline(settings, source, NullSink(), report_every_s=3600, tick=tick,
                                  on_events=on_events)  # fmt: skip
        result.frames = int(pipeline.run(stop)["frames"])
    finally:
        source.close()
    return result

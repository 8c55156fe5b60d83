"""``intentcam check --walk N``: the installer walks through the door, reaches into the shelf,
and sees it counted.

The camera runs for N seconds through the daemon's own pipeline (its detector, tracker, poses and
analytics, the lines and zones that count: live ones saved by ``set_zones`` win over the file),
and every line crossing, zone entry, shelf interaction and alert is reported the moment its
record is written, token-free (:mod:`intentcam.service.live`). Nothing is spooled or published.
A recording (``--source clip.mp4``) plays at its own frame rate, so N seconds mean the same as
on a camera.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from intentcam.analytics.alerts import AlertRules
from intentcam.capture import detect_kind, open_source
from intentcam.config import Settings, with_sections
from intentcam.control.geometry_store import counting_geometry
from intentcam.pipeline import build_pipeline
from intentcam.service.live import LiveCounts, LiveEvent, LiveSink, watching


@dataclass
class WalkReport:
    """What the walk test saw: the totals, every event, whose geometry counted (``config`` or
    ``live``), the alert rules turned on, and those of them in their quiet hours when it
    began."""

    seconds: float
    counts: LiveCounts
    frames: int = 0
    events: list[LiveEvent] = field(default_factory=list)
    geometry: str = "config"
    rules: list[str] = field(default_factory=list)
    quiet_rules: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "frames": self.frames,
            **self.counts.as_dict(),
            "events": [event.as_dict() for event in self.events],
            "geometry": self.geometry,
            "rules": self.rules,
            "quiet_rules": self.quiet_rules,
        }


def walk(
    settings: Settings, seconds: float, report: Callable[[LiveEvent], None] = lambda e: None
) -> WalkReport:
    """Run the camera for ``seconds``; ``report`` is called with each event as it happens."""
    settings, whose = counting_geometry(settings)
    if settings.camera.kind == "file" or (
        settings.camera.kind == "auto" and detect_kind(settings.camera.source) == "file"
    ):
        settings = with_sections(settings, camera={"pace": "realtime"})
    origin = time.time()
    result = WalkReport(
        seconds,
        LiveCounts.of(settings.lines, settings.zones),
        geometry=whose,
        rules=[rule.id for rule in settings.alerts.active],
        quiet_rules=AlertRules.from_config(settings.alerts, settings.analytics.timezone).quiet(
            origin
        ),
    )

    def happened(event: LiveEvent) -> None:
        result.counts.add(event)
        result.events.append(event)
        report(event)

    stop = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        if time.monotonic() - started >= seconds:
            stop.set()

    source = open_source(settings.camera)
    try:
        pipeline = build_pipeline(watching(settings), source, LiveSink(happened, origin),
                                  report_every_s=3600, tick=tick)  # fmt: skip
        result.frames = int(pipeline.run(stop)["frames"])
    finally:
        source.close()
    return result

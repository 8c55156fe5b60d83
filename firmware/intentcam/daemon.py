"""The daemon: everything ``intentcam run`` starts, wired together, and stopped in order.

source -> detector -> tracking + analytics -> telemetry (spool -> MQTT) and the local sink;
commands from MQTT are validated on the network thread and applied between frames; a health
message goes out every ``telemetry.health_interval_s``. On stop, the partial window is flushed
into the spool, ``stopped`` is published and the spool gets a few seconds to drain.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from intentcam.capture import open_source
from intentcam.config import Settings
from intentcam.control import ControlPlane, GeometryStore
from intentcam.control.geometry_store import Geometry
from intentcam.detect import build_detector
from intentcam.pipeline import Pipeline
from intentcam.scheduler import MotionGate, MotionGateSettings
from intentcam.service.notify import Notifier
from intentcam.sinks import Sink
from intentcam.telemetry.health import HealthMonitor
from intentcam.telemetry.service import Telemetry
from intentcam.track.stage import TrackingStage

log = logging.getLogger(__name__)


def motion_gate(settings: Settings) -> MotionGate | None:
    """The configured motion gate, or ``None`` when ``motion_gate.enabled`` is false."""
    config = settings.motion_gate
    if not config.enabled:
        return None
    return MotionGate(MotionGateSettings(pixel_threshold=config.pixel_threshold,
                                         min_changed=config.min_changed,
                                         moving_speed=config.moving_speed,
                                         recheck_s=config.recheck_s, max_skip_s=config.max_skip_s))


def run_daemon(settings: Settings, sink: Sink, stop: threading.Event, *,
               config_path: Path | None = None, overrides: dict[str, Any] | None = None,
               max_frames: int | None = None, report_every_s: float = 5.0,
               frame_records: bool = False, notifier: Notifier | None = None) -> dict[str, Any]:
    """Run until ``stop`` is set, the source ends or ``max_frames``; returns the summary."""
    notifier = notifier or Notifier.from_environment()
    detector = build_detector(settings)
    store = GeometryStore(settings.paths.state_dir)
    stored = store.load()
    if stored is not None:
        log.info("using %d line(s) and %d zone(s) set live (%s)", len(stored.lines),
                 len(stored.zones), store.path)
        settings.lines, settings.zones = stored.lines, stored.zones
    models = [detector.model.describe()]
    holder: dict[str, Pipeline] = {}

    def current_stage() -> TrackingStage | None:
        return holder["pipeline"].stage if "pipeline" in holder else None

    def apply_geometry(geometry: Geometry) -> None:
        stage = current_stage()
        if stage is not None:
            stage.analytics.replace_geometry(geometry.lines, geometry.zones)

    def reset_counters() -> None:
        stage = current_stage()
        if stage is not None:
            stage.analytics.reset_counters()

    def occupancy() -> dict[str, Any]:
        stage = current_stage()
        if stage is None:
            return {"people": 0, "store": 0, "zones": {zone.id: 0 for zone in settings.zones}}
        return stage.analytics.occupancy()

    control = ControlPlane(settings, store, send=lambda reply: telemetry.send_reply(reply),
                           config_path=config_path, overrides=overrides or {},
                           max_bytes=settings.telemetry.max_command_bytes,
                           apply_geometry=apply_geometry, reset_counters=reset_counters)
    telemetry = Telemetry(settings, sink, models=lambda: models, occupancy=occupancy,
                          on_command=control.handle)
    source = open_source(settings.camera)
    health = HealthMonitor()
    next_health = time.monotonic() + settings.telemetry.health_interval_s

    status_window = {"at": time.monotonic(), "frames": 0}

    def status() -> str:
        now, frames = time.monotonic(), holder["pipeline"].heartbeat.frames
        fps = (frames - status_window["frames"]) / max(now - status_window["at"], 1e-9)
        status_window.update(at=now, frames=frames)
        people = occupancy()["people"]
        broker = ("connected" if telemetry.broker_connected else "disconnected") \
            if settings.mqtt.host else "not configured"
        return (f"{fps:.1f} fps, {people} people in view, broker {broker}, "
                f"spool {telemetry.spool.stats()['depth']}, camera {source.stats.state}")

    def tick() -> None:
        nonlocal next_health
        control.apply_pending()
        heartbeat = holder["pipeline"].heartbeat
        if heartbeat.frames and not notifier.ready:
            notifier.notify_ready(f"first frame processed; {models[0]['reason']}")
        notifier.tick(heartbeat.last_progress, status)
        now = time.monotonic()
        if now >= next_health:
            next_health = now + settings.telemetry.health_interval_s
            pipeline = holder["pipeline"]
            telemetry.publish_health(health.body(
                pipeline.heartbeat.frames, spool=telemetry.spool.stats(), source=source,
                broker=telemetry.broker_connected, models=models))

    pipeline = Pipeline(source, detector,
                        lambda aspect: TrackingStage.from_settings(settings, aspect), telemetry,
                        fps_cap=settings.camera.fps_cap, report_every_s=report_every_s,
                        frame_records=frame_records, tick=tick, gate=motion_gate(settings))
    pipeline.timings = health.timings
    holder["pipeline"] = pipeline
    log.info("running %s on %s (%s)", settings.detector.model, source.name, models[0]["reason"])
    telemetry.start()
    try:
        return pipeline.run(stop, max_frames=max_frames)  # flushes the partial window on the way out
    finally:
        notifier.stopping()
        source.close()
        telemetry.stop()
        telemetry.close()

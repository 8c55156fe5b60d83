"""The daemon: everything ``intentcam run`` starts, wired together, and stopped in order.

source -> detector -> camera view (tracking, analytics) -> telemetry (spool -> MQTT) and the local
sink; commands from MQTT are validated on the network thread and applied between frames; a health
message goes out every ``telemetry.health_interval_s``, the retained ``state`` whenever the
occupancy or today's totals change (at most every ``telemetry.state_interval_s``). A start
continues the day a previous run saved in the spool (after publishing the checkpoint of a run
that did not stop cleanly), and the cooldowns its staff alerts were in. On stop, the partial
window is flushed into the spool, ``stopped`` is published and the spool gets a few seconds to
drain.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from intentcam.aggregator import DailyReset, DayState
from intentcam.analytics.alerts import AlertRules, SavedCooldowns, make_test_alert
from intentcam.capture import open_source
from intentcam.config import AlertRuleConfig, Settings
from intentcam.control import ControlPlane, GeometryStore, Reply
from intentcam.control.commands import warn_alert_zones
from intentcam.control.geometry_store import Geometry
from intentcam.detect import PersonDetector
from intentcam.ota.agent import LoopCount, OtaAgent
from intentcam.ota.ddi import DdiClient
from intentcam.ota.download import Download
from intentcam.ota.install import Installer, fault_from_environment, store_of
from intentcam.ota.startup import load_active
from intentcam.pipeline import build_pipeline
from intentcam.records import people_in_words
from intentcam.service.lock import DaemonLock
from intentcam.service.notify import Notifier
from intentcam.sinks import Sink
from intentcam.telemetry.checkpoint import WindowCheckpoint
from intentcam.telemetry.health import HealthMonitor
from intentcam.telemetry.service import Telemetry

log = logging.getLogger(__name__)


class Daemon:
    """Owns the pipeline, the control plane, telemetry and health of one running camera."""

    def __init__(
        self,
        settings: Settings,
        sink: Sink,
        *,
        config_path: Path | None = None,
        overrides: dict[str, Any] | None = None,
        report_every_s: float = 5.0,
        frame_records: bool = False,
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.notifier = notifier or Notifier.from_environment()
        self.lock = DaemonLock.acquire(settings.paths.state_dir)
        self.installer = Installer(settings, store_of(settings), fault=fault_from_environment())
        active = load_active(self.installer)
        detector = active.detector
        self.degraded = active.degraded
        self._rolled_back = active.rolled_back
        self._status_due = False
        #: How many optional stages of the view were off at the last status (one more: say so).
        self._stages_off = 0
        if self.degraded:
            log.error("running degraded: %s", self.degraded)
        self.detector_model = detector.describe()
        self.store = GeometryStore(settings.paths.state_dir)
        geometry, live = self.store.counting(settings.lines, settings.zones)
        if live:
            log.info(
                "using %d line(s) and %d zone(s) set live (%s)",
                len(geometry.lines),
                len(geometry.zones),
                self.store.path,
            )
            settings.lines, settings.zones = geometry.lines, geometry.zones
            warn_alert_zones(settings)
        self.control = ControlPlane(
            settings,
            self.store,
            send=self._send_reply,
            config_path=config_path,
            overrides=overrides or {},
            max_bytes=settings.telemetry.max_command_bytes,
            apply_geometry=self._apply_geometry,
            reset_counters=self._reset_counters,
            ota_install=self._ota_install,
            decommission=self._decommission,
            send_test_alert=self._send_test_alert,
        )
        self.telemetry = Telemetry(
            settings,
            sink,
            models=self.models,
            occupancy=self._occupancy,
            on_command=self.control.handle,
            degraded=self._degraded_reason,
            ota=lambda: self.ota.body or None,
        )
        self.ota = OtaAgent(
            self.installer,
            publish=self._publish_ota,
            swap=self._swap_detector,
            heartbeat=self._loop_count,
            loaded=active.installed,
        )
        self.installer.report = self.ota.report
        if active.in_trial and active.installed is not None:
            detector = self.ota.start_trial(detector, active.installed)
        self.ddi = DdiClient.from_settings(settings, self.ota) if settings.ota.server_url else None
        self.source = open_source(settings.camera)
        self.health = HealthMonitor()
        self.checkpoint = WindowCheckpoint(settings.paths.state_dir)
        self._publish_recovered()
        self.restored = self._todays_saved_state()
        self._last_state: dict[str, Any] | None = None
        self._next_state = 0.0
        self.pipeline = build_pipeline(
            settings,
            self.source,
            self.telemetry,
            detector=detector,
            report_every_s=report_every_s,
            frame_records=frame_records,
            tick=self._tick,
            restored=self.restored,
            cooldowns=SavedCooldowns(settings.paths.state_dir),
        )
        self.pipeline.timings = self.health.timings
        self._next_health = time.monotonic() + settings.telemetry.health_interval_s
        self._next_checkpoint = time.monotonic() + settings.analytics.checkpoint_s
        self._checkpointed_window: float | None = None
        self._status_at, self._status_frames = time.monotonic(), 0

    def run(self, stop: threading.Event, max_frames: int | None = None) -> dict[str, Any]:
        """Run until ``stop`` is set, the source ends or ``max_frames``; returns the summary."""
        log.info(
            "running %s on %s (%s)",
            self.detector_model["id"],
            self.source.name,
            self.detector_model["reason"],
        )
        # Before the link starts: the birth status carries this state, and the retained ``ota``
        # message goes out on connect, so no second status is needed.
        self.ota.announce_start(self._rolled_back, self.degraded)
        self._status_due = False
        self.telemetry.start()
        if self.ddi is not None:
            self.ddi.start()
        try:
            # The pipeline flushes the partial window on the way out: no checkpoint needed then.
            summary = self.pipeline.run(stop, max_frames=max_frames)
            self.checkpoint.clear()
            return summary
        finally:
            if self.ddi is not None:
                self.ddi.stop()
            self.ota.stop()
            self.notifier.stopping()
            self.source.close()
            self.telemetry.stop()
            self.telemetry.close()
            self.lock.release()

    def _publish_recovered(self) -> None:
        """The checkpoint of a run that did not stop cleanly goes out first (under that run's
        boot id), except windows whose closed ``counts`` the spool already holds."""
        recovered = self.checkpoint.take()
        saved = self.telemetry.saved_state() or {}
        closed_until = str(saved.get("window_end", ""))
        fresh = [r for r in recovered if r.get("window", {}).get("start", "") >= closed_until]
        if recovered:
            log.warning(
                "the last run did not stop cleanly: publishing its checkpointed partial window "
                "(%d record(s); %d already closed by that run)",
                len(fresh),
                len(recovered) - len(fresh),
            )
        for record in fresh:
            self.telemetry.write(record)

    def _day_began(self) -> float:
        """When today's day began (the last daily reset), wall clock."""
        return DailyReset.from_config(self.settings.analytics).last_at_or_before(time.time())

    def _todays_saved_state(self) -> DayState | None:
        """The day state the spool saved, if it is of today (else the day starts from zero)."""
        saved = self.telemetry.saved_state()
        day = DayState.from_saved(saved) if saved is not None else None
        if day is None:
            return None
        if day.since != self._day_began():
            log.info("the saved day state is from an earlier day; starting from zero")
            return None
        log.info(
            "continuing today's counts: store occupancy %d, %d line total(s) (saved by the last run)",
            day.store_occupancy,
            len(day.lines),
        )
        return day

    # --- control plane (frame-loop thread) ----------------------------------------------------

    def _send_reply(self, reply: Reply) -> None:
        self.telemetry.send_reply(
            reply.command,
            reply.body(),
            response_topic=reply.response_topic,
            correlation=reply.correlation,
        )

    def _apply_geometry(self, geometry: Geometry) -> None:
        if self.pipeline.view is not None:
            self.pipeline.view.apply_geometry(geometry.lines, geometry.zones)
        self.telemetry.announce_homeassistant()  # sensors follow the lines and zones

    def _decommission(self) -> dict[str, Any]:
        removed = self.telemetry.withdraw_homeassistant()
        return {
            "homeassistant": "removed" if removed else "not enabled",
            "next": "stop the daemon (systemctl disable --now intentcam); a restart announces "
            "the device again",
        }

    def _send_test_alert(self, rule: AlertRuleConfig, zone: str) -> dict[str, Any]:
        """``test_alert``: a test alert of ``rule`` goes out as a real one would."""
        now = time.time()
        alert = make_test_alert(rule, zone, now)
        self.telemetry.write(alert)
        log.info("test alert %s of rule %s at %s sent", alert["alert_id"], rule.id, zone)
        rules = AlertRules.from_config(self.settings.alerts, self.settings.analytics.timezone)
        return {
            "alert_id": alert["alert_id"],
            "rule": rule.id,
            "zone": zone,
            # A real alert of the rule would keep quiet now: the staff may wonder why.
            "quiet_hours_now": rule.id in rules.quiet(now),
        }

    def _reset_counters(self) -> None:
        if self.pipeline.view is not None:
            self.pipeline.view.reset_counters()

    def _ota_install(self, url: str, sha256: str) -> str | None:
        return self.ota.request_install(Download(url, sha256))

    def models(self) -> list[dict[str, Any]]:
        """Every model running (the detector first), for health and status."""
        view = self.pipeline.view
        return [self.detector_model, *(view.models() if view is not None else [])]

    def _swap_detector(self, detector: PersonDetector) -> None:
        """Between two frames (frame-loop thread): the next frame runs ``detector``."""
        self.pipeline.detector = detector
        if self.pipeline.view is not None:
            self.pipeline.view.recalibrate(self.settings.tracker, detector.operating_point)
        self.detector_model = detector.describe()
        self.degraded = None

    def _publish_ota(self, body: dict[str, Any]) -> None:
        """Every OTA transition (any thread): the retained ``ota`` topic now, and ``status``
        (which carries it, the model versions and the occupancy) from the frame loop's next
        turn, which alone reads the view."""
        self.telemetry.publish_ota(body)
        self._status_due = True

    def _occupancy(self) -> dict[str, Any]:
        view = self.pipeline.view
        if view is None:
            store = self.restored.store_occupancy if self.restored is not None else 0
            return {"people": 0, "store": store, "zones": {z.id: 0 for z in self.settings.zones}}
        return view.occupancy()

    def _live_state(self) -> dict[str, Any]:
        view = self.pipeline.view
        if view is not None:
            return view.live_state()
        settings = self.settings
        day = self.restored or DayState(self._day_began())
        return day.live(
            [line.id for line in settings.lines],
            [zone.id for zone in settings.zones],
            settings.shelf_zone_ids,
        )

    def _publish_state_if_changed(self, now: float) -> None:
        """Looked at once per ``state_interval_s``, not every loop turn: building and comparing
        the state is per-frame work otherwise, for a message that may only change that often."""
        if now < self._next_state:
            return
        self._next_state = now + self.settings.telemetry.state_interval_s
        state = self._live_state()
        if state != self._last_state:
            self._last_state = state
            self.telemetry.publish_state(state)

    # --- once per loop turn ---------------------------------------------------------------------

    def _degraded_reason(self) -> str | None:
        """Why the camera is not all there: a fallback detector, stages switched off."""
        view = self.pipeline.view
        off = [f"{stage} off: {why}" for stage, why in view.stages_off.items()] if view else []
        return "; ".join(reason for reason in (self.degraded, *off) if reason) or None

    def _tick(self) -> None:
        self.control.apply_pending()
        self.ota.tick(self.pipeline.detector)
        view = self.pipeline.view
        if view is not None and len(view.stages_off) != self._stages_off:
            self._stages_off = len(view.stages_off)
            self._status_due = True  # status and health say degraded, and why
        if self._status_due:
            self._status_due = False
            self.telemetry.publish_status()
        heartbeat = self.pipeline.heartbeat
        if heartbeat.frames and not self.notifier.ready:
            self.notifier.notify_ready(f"first frame processed; {self.detector_model['reason']}")
        self.notifier.tick(heartbeat.last_alive, self._status)
        now = time.monotonic()
        self._publish_state_if_changed(now)
        self._checkpoint_if_due(now)
        if now >= self._next_health:
            self._next_health = now + self.settings.telemetry.health_interval_s
            self.telemetry.supervise()
            self.telemetry.publish_health(
                self.health.body(
                    heartbeat.frames,
                    spool=self.telemetry.spool.stats(),
                    source=self.source,
                    broker=self.telemetry.broker_connected,
                    models=self.models(),
                    broker_error=self.telemetry.broker_error,
                    alerts=self.telemetry.alert_delivery(),
                )
            )

    def _loop_count(self) -> LoopCount:
        beat = self.pipeline.heartbeat
        return LoopCount(beat.frames, beat.people, beat.detections, beat.detect_s, beat.busy_s)

    def _checkpoint_if_due(self, now: float) -> None:
        """Every ``checkpoint_s``, and at once when the window it holds has closed: until then
        a crash would recover a window already published (dropped as such on the next start),
        losing the new window's first frames instead of at most one interval."""
        view = self.pipeline.view
        if view is None:
            return
        if now < self._next_checkpoint and view.open_window == self._checkpointed_window:
            return
        self._next_checkpoint = now + self.settings.analytics.checkpoint_s
        self._checkpointed_window = view.open_window
        partial = view.partial()
        for record in partial:  # recovered after a crash, it keeps this run's boot id
            record["boot_id"] = self.telemetry.boot_id
        self.checkpoint.save(partial)

    def _status(self) -> str:
        """The systemd ``STATUS=`` line."""
        now, frames = time.monotonic(), self.pipeline.heartbeat.frames
        fps = (frames - self._status_frames) / max(now - self._status_at, 1e-9)
        self._status_at, self._status_frames = now, frames
        in_view = people_in_words(self._occupancy()["people"])
        mqtt = self.settings.mqtt
        broker = (
            (
                "connected"
                if self.telemetry.broker_connected
                else f"disconnected ({self.telemetry.broker_error})"
            )
            if mqtt.host
            else "not configured"
        )
        return (
            f"{fps:.1f} fps, {in_view} in view, broker {broker}, "
            f"spool {self.telemetry.spool.stats()['depth']}, camera {self.source.stats.state}"
        )


def run_daemon(
    settings: Settings,
    sink: Sink,
    stop: threading.Event,
    *,
    config_path: Path | None = None,
    overrides: dict[str, Any] | None = None,
    max_frames: int | None = None,
    report_every_s: float = 5.0,
    frame_records: bool = False,
    notifier: Notifier | None = None,
) -> dict[str, Any]:
    """Build the :class:`Daemon` and run it until ``stop``, the source ends or ``max_frames``."""
    daemon = Daemon(
        settings,
        sink,
        config_path=config_path,
        overrides=overrides,
        report_every_s=report_every_s,
        frame_records=frame_records,
        notifier=notifier,
    )
    return daemon.run(stop, max_frames=max_frames)

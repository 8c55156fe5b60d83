"""``intentcam check``: does this installation work? One pass/fail line per step.

Steps, in order (a step whose inputs failed is reported as skipped, not run):
config -> geometry (whose lines and zones count: the file's, or live ones set over MQTT) ->
clock (synchronised? windows are wall-clock aligned and a Pi has no RTC) -> daemon (if one runs:
its last health report says it is well) -> models (files present and verified: the detector's,
and those the camera view loads beside it, :func:`view_models`) -> detector
(loads) -> camera (delivers a frame) -> detection (runs on that frame) -> broker (accepts our
connection, if one is configured). ``warn`` steps are worth reading but do not fail the check.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from intentcam.capture import open_source
from intentcam.config import Settings, load_config
from intentcam.control.geometry_store import GeometryStore
from intentcam.detect import PersonDetector, build_detector
from intentcam.detect.selection import select_detector
from intentcam.errors import ConfigError, UserError
from intentcam.models import Manifest, load_manifest, verified_model_path
from intentcam.models.store import verified_labels
from intentcam.pose.build import POSE_MODEL
from intentcam.records import people_in_words
from intentcam.sentiment.build import EXPRESSION_MODEL
from intentcam.service.lock import daemon_running
from intentcam.telemetry.health import HealthReport, read_health_file
from intentcam.telemetry.mqtt import probe_broker


@dataclass
class Step:
    name: str
    state: str  # pass | warn | fail | skip
    detail: str


#: adjtimex(2) answers TIME_ERROR while the kernel clock is not synchronised (no NTP yet).
TIME_ERROR = 5


def kernel_clock_state() -> int | None:
    """adjtimex(2)'s clock state (0 synchronised ... 5 not), ``None`` off Linux."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        timex = ctypes.create_string_buffer(512)  # struct timex with modes = 0: read only
        state = int(libc.adjtimex(timex))
    except (OSError, AttributeError):
        return None
    return None if state < 0 else state


def clock_step(state: int | None) -> Step:
    if state is None:
        return Step("clock", "skip", "cannot read the kernel clock state (not Linux)")
    if state == TIME_ERROR:
        return Step(
            "clock",
            "warn",
            "not synchronised: windows are aligned to the wall clock and a Pi has no RTC; "
            "enable systemd-timesyncd or chrony and check the network reaches an NTP server",
        )
    return Step("clock", "pass", "synchronised (kernel clock disciplined by NTP)")


def geometry_step(settings: Settings, where: str) -> Step:
    """Whose lines and zones the daemon counts with: ``set_zones`` (saved in the state dir)
    wins over the config file until it is cleared."""
    live = GeometryStore(settings.paths.state_dir)
    geometry, is_live = live.counting(settings.lines, settings.zones)
    names = [line.id for line in geometry.lines] + [zone.id for zone in geometry.zones]
    if not is_live:
        return Step("geometry", "pass", f"lines and zones of {where}: {', '.join(names) or 'none'}")
    saved = time.strftime("%Y-%m-%d %H:%M", time.localtime(live.path.stat().st_mtime))
    return Step(
        "geometry",
        "warn",
        f"live lines and zones set over MQTT ({live.path}, {saved}) override {where}: "
        f"{', '.join(names) or 'none'}; delete the file to use the config's again",
    )


def watches_shelves(settings: Settings) -> bool:
    """Whether the zones the daemon counts with (live ones first) include a shelf."""
    geometry, _ = GeometryStore(settings.paths.state_dir).counting(settings.lines, settings.zones)
    return any(zone.kind == "shelf" for zone in geometry.zones)


def view_models(settings: Settings) -> list[tuple[str, str]]:
    """The models the daemon loads beside the detector, each with why: MoveNet for shelf zones,
    the face and expression models when expression inference is on."""
    needed = [(POSE_MODEL, "shelf zones")] if watches_shelves(settings) else []
    if settings.privacy.expression_inference:
        needed += [(settings.faces.model, "expression inference"),
                   (EXPRESSION_MODEL, "expression inference")]  # fmt: skip
    return needed


def _view_models(settings: Settings, manifest: Manifest, detector: str) -> tuple[str, str]:
    """The models step's state and detail: the detector's line, then each of
    :func:`view_models` verified, or why not (a missing pose model fails the step, not the
    detector's own steps: the daemon would start without that stage, degraded)."""
    found, problems = [detector], []
    for model_id, why in view_models(settings):
        try:
            spec = manifest.get(model_id)
            verified_model_path(spec, settings.paths.models)
            found.append(f"{spec.id} {spec.version} ({why}) verified")
        except UserError as exc:
            problems.append(f"{exc} (needed for {why}; the daemon counts on without it, degraded)")
    return ("fail", "; ".join(problems)) if problems else ("pass", "; ".join(found))


@dataclass
class Check:
    """Runs the steps; each records a :class:`Step`."""

    config_path: Path | None
    overrides: dict[str, Any]
    camera_timeout_s: float = 10.0
    broker_timeout_s: float = 5.0
    clock_state: Callable[[], int | None] = kernel_clock_state

    def run(self) -> list[Step]:
        steps: list[Step] = []
        settings = self._config(steps)
        if settings is not None:
            steps.append(geometry_step(settings, str(self.config_path or "the defaults")))
        steps.append(clock_step(self.clock_state()))
        self._daemon(settings, steps)
        detector = self._detector(settings, steps) if settings else None
        frame = self._camera(settings, steps) if settings else None
        self._detection(
            detector, frame, steps, near=settings is not None and watches_shelves(settings)
        )
        self._broker(settings, steps)
        return steps

    def _config(self, steps: list[Step]) -> Settings | None:
        try:
            settings = load_config(self.config_path, overrides=self.overrides)
        except ConfigError as exc:
            steps.append(Step("config", "fail", "; ".join(exc.problems)))
            return None
        where = self.config_path or "defaults and environment"
        steps.append(
            Step(
                "config",
                "pass",
                f"{where}: device {settings.device.id} at site "
                f"{settings.device.site}, {len(settings.lines)} line(s), "
                f"{len(settings.zones)} zone(s)",
            )
        )
        return settings

    def _daemon(self, settings: Settings | None, steps: list[Step]) -> None:
        """The running daemon's own view: a link that is down, a spool in memory, a camera away."""
        if settings is None:
            steps.append(Step("daemon", "skip", "no valid config"))
            return
        running = daemon_running(settings.paths.state_dir)
        report = read_health_file(settings.paths.runtime)
        if report is None:
            detail = (
                "running, no health report yet (one every "
                f"{settings.telemetry.health_interval_s:g} s)"
                if running
                else f"not running (no daemon holds {settings.paths.state_dir})"
            )
            steps.append(Step("daemon", "pass" if running else "skip", detail))
            return
        steps.append(daemon_step(report, settings.telemetry.health_interval_s))

    def _detector(self, settings: Settings, steps: list[Step]) -> PersonDetector | None:
        try:
            manifest = load_manifest(settings.paths.manifest)
            spec = select_detector(settings, manifest).spec
            path = verified_model_path(spec, settings.paths.models)
            verified_labels(manifest, spec)
            verified = f"{spec.id} {spec.version}: {path} verified"
            steps.append(Step("models", *_view_models(settings, manifest, verified)))
        except UserError as exc:
            steps.append(Step("models", "fail", str(exc)))
            steps.append(Step("detector", "skip", "no verified model"))
            return None
        try:
            detector = build_detector(settings, manifest)
        except UserError as exc:
            steps.append(Step("detector", "fail", str(exc)))
            return None
        described = detector.describe()
        steps.append(
            Step(
                "detector",
                "pass",
                f"{described['runtime']} on {described['delegate']}, "
                f"{described['threads']} thread(s); {described['reason']}",
            )
        )
        return detector

    def _camera(self, settings: Settings, steps: list[Step]) -> Any:
        try:
            source = open_source(settings.camera)
        except UserError as exc:
            steps.append(Step("camera", "fail", str(exc)))
            return None
        try:
            started = time.monotonic()
            frame = source.read(timeout=self.camera_timeout_s)
            if frame is None:
                reason = source.stats.last_error or "no frame"
                steps.append(
                    Step(
                        "camera",
                        "fail",
                        f"{source.name}: no frame within {self.camera_timeout_s:g} s ({reason})",
                    )
                )
                return None
            width, height = frame.size
            steps.append(
                Step(
                    "camera",
                    "pass",
                    f"{source.name}: {width}x{height} frame in {time.monotonic() - started:.1f} s",
                )
            )
            return frame
        finally:
            source.close()

    def _detection(
        self, detector: PersonDetector | None, frame: Any, steps: list[Step], near: bool
    ) -> None:
        if detector is None or frame is None:
            steps.append(Step("detection", "skip", "needs a detector and a camera frame"))
            return
        detections = detector.detect(frame.image, near=near)  # tiled as the daemon would
        steps.append(
            Step(
                "detection",
                "pass",
                f"{people_in_words(len(detections))} in the frame (tiling "
                f"{detector.last.layout}, {detector.last.invokes} invoke(s))",
            )
        )

    def _broker(self, settings: Settings | None, steps: list[Step]) -> None:
        if settings is None:
            steps.append(Step("broker", "skip", "no valid config"))
            return
        if not settings.mqtt.host:
            steps.append(Step("broker", "skip", "mqtt.host not configured: telemetry is spooled"))
            return
        address = f"{settings.mqtt.host}:{settings.mqtt.effective_port}"
        try:
            problem = probe_broker(
                settings.mqtt, f"intentcam-check-{settings.device.id}", self.broker_timeout_s
            )
        except UserError as exc:
            problem = str(exc)
        if problem:
            steps.append(Step("broker", "fail", f"{address}: {problem}"))
        else:
            tls = " over TLS" if settings.mqtt.tls else ""
            steps.append(Step("broker", "pass", f"{address}: connected{tls}"))


def daemon_step(report: HealthReport, interval_s: float, now: float | None = None) -> Step:
    """Judge a running daemon by its last health report: every reason it is not well, in one
    line, or a pass with what it is doing."""
    age = report.age_s(now)
    health = report.health
    problems = []
    if age > 3 * interval_s + 10:
        problems.append(f"last health report {age:.0f} s old (pid {report.pid} hung or killed)")
    if report.state != "online":
        problems.append(f"{report.state}: {report.reason}")
    if health.get("broker") == "disconnected" and health.get("broker_error"):
        spool = health.get("spool", {})
        problems.append(
            f"telemetry is not reaching the broker ({health['broker_error']}); "
            f"{spool.get('depth', '?')} message(s) wait in the spool"
        )
    camera = health.get("source", {}).get("state", "?")
    if camera not in ("streaming", "starting"):
        problems.append(f"camera {camera}")
    # Not a failure by itself (the outage may be over), but the staff missed these.
    alerts = health.get("alerts", {})
    expired = (
        f"; {alerts['expired']} of {alerts['fired']} staff alert(s) dropped undelivered "
        "(broker away longer than alerts.deliver_within_s)"
        if alerts.get("expired")
        else ""
    )
    if problems:
        return Step("daemon", "fail", "; ".join(problems) + expired)
    return Step(
        "daemon",
        "pass",
        f"pid {report.pid} up {health.get('uptime_s', 0):.0f} s, {health.get('fps', 0)} fps, "
        f"broker {health.get('broker', '?')}, spool {health.get('spool', {}).get('depth', '?')}, "
        f"report {age:.0f} s old{expired}",
    )


def as_dicts(steps: list[Step]) -> list[dict[str, str]]:
    return [asdict(step) for step in steps]

"""The frame loop: source -> scheduler -> detector -> tracking and analytics -> records.

One thread runs this loop; live sources capture on their own thread. The loop records progress
after every processed frame, which is what the systemd watchdog will be fed from: a stalled
camera or a hung inference stops the heartbeat.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from intentcam.aggregator import DayState
from intentcam.analytics.alerts import SavedCooldowns
from intentcam.capture.frame import Frame, FrameSource
from intentcam.config import Settings
from intentcam.detect import PersonDetector, build_detector
from intentcam.detect.detections import Detections
from intentcam.models.manifest import OperatingPoint
from intentcam.pose.sampler import MAX_SPARE_MS
from intentcam.scheduler import MotionGate, MotionGateSettings
from intentcam.sinks import Sink
from intentcam.telemetry.health import StageTimings
from intentcam.view import CameraView

#: Builds the camera view once the first frame tells the aspect ratio (width / height), for the
#: operating point of the detector running then (an OTA swap may have changed it).
ViewFactory = Callable[[float, OperatingPoint], CameraView]

log = logging.getLogger(__name__)

#: How long one ``read`` may block before the loop re-checks whether it should stop.
READ_TIMEOUT_S = 0.5


@dataclass
class Heartbeat:
    """Monotonic time of the last processed frame, for the watchdog and the health report."""

    frames: int = 0
    last_progress: float = 0.0
    #: People counted over all frames (what OTA probation compares models by).
    people: int = 0
    #: The last loop turn, frame or not: what the systemd watchdog is fed from. A hung loop or
    #: inference stops it; a camera that is away does not (the loop keeps reconnecting,
    #: closing empty windows and reporting).
    last_alive: float = 0.0
    #: Frames the detector ran on, and the seconds it took (the loop's own clock, whatever the
    #: detector reports of itself): what OTA probation compares the models' speed by.
    detections: int = 0
    detect_s: float = 0.0
    #: Seconds spent on frames, from a frame's arrival to its records written (not waiting for
    #: the camera): a camera whose frame rate drops does not make the loop look slow by it.
    busy_s: float = 0.0

    def beat(
        self, now: float, people: int = 0, detect_s: float | None = None, busy_s: float = 0.0
    ) -> None:
        """One frame processed in ``busy_s``; ``detect_s``: the detector ran on it and took
        that long."""
        self.frames += 1
        self.people += people
        self.last_progress = now
        self.busy_s += busy_s
        if detect_s is not None:
            self.detections += 1
            self.detect_s += detect_s


@dataclass
class LoopStats:
    """Running totals of one run, and the window since the last report."""

    started: float
    frames: int = 0
    people: int = 0
    invokes: int = 0
    #: Frames on which the motion gate skipped the detector.
    gated: int = 0
    window_started: float = 0.0
    window_frames: int = 0
    window_people: int = 0

    def summary(self, now: float, source: FrameSource) -> dict[str, Any]:
        elapsed = max(now - self.started, 1e-9)
        return {
            "frames": self.frames,
            "elapsed_s": round(elapsed, 3),
            "fps": round(self.frames / elapsed, 2),
            "people_per_frame": round(self.people / self.frames, 3) if self.frames else 0.0,
            "invokes": self.invokes,
            "gated_frames": self.gated,
            "dropped": source.stats.dropped,
            "source_errors": source.stats.errors,
            "source_state": source.stats.state,
        }


def frame_record(
    frame: Frame, run_origin: float, detections: Detections, view: CameraView
) -> dict[str, Any]:
    """One frame's people: detections and confirmed tracks (normalised boxes, no image data)."""
    ids, boxes = view.tracks()
    # float64 before rounding, or float32 noise (0.8495000004768372) reaches the JSON.
    return {
        "type": "frame",
        "frame": frame.index,
        "t": round(frame.timestamp - run_origin, 3),
        "people": len(detections),
        "boxes": detections.boxes.astype(float).round(4).tolist(),
        "scores": detections.scores.astype(float).round(3).tolist(),
        "tracks": ids.tolist(),
        "track_boxes": boxes.astype(float).round(4).tolist(),
    }


@dataclass
class Pipeline:
    """Runs frames from ``source`` through ``detector`` into ``sink`` until stopped."""

    source: FrameSource
    detector: PersonDetector
    view_factory: ViewFactory
    sink: Sink
    fps_cap: float | None = None
    report_every_s: float = 5.0
    #: Also write one ``frame`` record per frame (boxes and track ids); off for the daemon.
    frame_records: bool = False
    clock: Callable[[], float] = time.monotonic
    heartbeat: Heartbeat = field(default_factory=Heartbeat)
    timings: StageTimings = field(default_factory=StageTimings)
    #: Called on every loop turn, frame or not (commands, health): runs on this thread.
    tick: Callable[[], None] | None = None
    #: Skips the detector where nothing moves; ``None`` runs it on every frame.
    gate: MotionGate | None = None
    view: CameraView | None = None

    def run(self, stop: threading.Event, max_frames: int | None = None) -> dict[str, Any]:
        """Process frames until the source ends, ``max_frames`` is reached or ``stop`` is set.

        Returns the run summary (also written to the sink as a ``summary`` record).
        """
        now = self.clock()
        stats = LoopStats(started=now, window_started=now)
        run_origin: float | None = None
        spare_ms = 0.0
        while not stop.is_set() and (max_frames is None or stats.frames < max_frames):
            self.heartbeat.last_alive = self.clock()
            if self.tick is not None:
                self.tick()
            read_started = self.clock()
            frame = self.source.read(timeout=READ_TIMEOUT_S)
            if frame is not None:
                waited_ms = (self.clock() - read_started) * 1e3
                self.timings.add("capture", waited_ms)
                # A live camera decodes on its own thread: the wait for its frame, and the
                # fps cap's sleep, are time the loop has to spare (for poses at shelves). A
                # recording waits for the loop, so a pose costs it no frame: it is sampled as
                # a camera with time to spare would be (everyone at a shelf at their rate).
                spare_ms = spare_ms + waited_ms if self.source.live else MAX_SPARE_MS
            if frame is None:
                if self.source.finished:
                    break
                if self.source.live and self.view is not None:
                    # Windows close on time, frames or not: an empty window says the camera
                    # was down (its state goes with it) instead of leaving a silent hole.
                    for record in self.view.idle(self.clock(), self.source.stats.state):
                        self.sink.write(record)
                continue
            started = self.clock()
            if run_origin is None:
                run_origin = frame.timestamp
            if self.view is None:
                width, height = frame.size
                self.view = self.view_factory(width / height, self.detector.operating_point)
            view = self.view
            detect_s: float | None = None
            if self._must_detect(frame, view):
                detect_started = self.clock()
                detections = self.detector.detect(
                    frame.image, min_score=view.low_score, near=view.watches_shelves
                )
                detect_s = self.clock() - detect_started
                last = self.detector.last
                records = view.process(
                    detections, frame.timestamp, frame.image, detect_ms=last.total_ms,
                    spare_ms=spare_ms,
                )  # fmt: skip
                invokes = last.invokes
                people = int((detections.scores >= self.detector.score_threshold).sum())
            else:
                records = view.coast(frame.timestamp)
                detections, invokes = Detections.empty(), 0
                people = view.people_now
                stats.gated += 1
            analysed_at = self.clock()
            for record in records:
                self.sink.write(record)
            self._time_stages(view, started, analysed_at, detected=invokes > 0)
            if self.frame_records:
                self.sink.write(frame_record(frame, run_origin, detections, view))
            stats.frames += 1
            stats.window_frames += 1
            stats.people += people
            stats.window_people += people
            stats.invokes += invokes
            now = self.clock()
            self.heartbeat.beat(now, people, detect_s, busy_s=now - started)
            if now - stats.window_started >= self.report_every_s:
                self._report(stats, now)
            spare_ms = self._respect_fps_cap(started, stop)
        if self.view is not None:
            for record in self.view.finish():
                self.sink.write(record)
        summary = {"type": "summary", **stats.summary(self.clock(), self.source)}
        self.sink.write(summary)
        return summary

    def _must_detect(self, frame: Frame, view: CameraView) -> bool:
        if self.gate is None:
            return True
        run = self.gate.should_detect(
            frame.image,
            frame.timestamp,
            tracks_present=view.tracks_present,
            tracks_moving=view.tracks_moving(self.gate.settings.moving_speed),
            tracks_starting=view.tracks_starting,
            people_at_shelves=view.people_at_shelves,
        )
        if run:
            self.gate.detected(frame.timestamp)
        return run

    def _time_stages(
        self, view: CameraView, started: float, analysed_at: float, *, detected: bool
    ) -> None:
        if detected:
            last = self.detector.last
            self.timings.add("preprocess", last.preprocess_ms)
            self.timings.add("invoke", last.invoke_ms)
            self.timings.add("detect_post", last.postprocess_ms)
        for stage, milliseconds in view.stage_ms.items():
            self.timings.add(stage, milliseconds)
        self.timings.add("telemetry", (self.clock() - analysed_at) * 1e3)
        self.timings.add("frame", (self.clock() - started) * 1e3)

    def _report(self, stats: LoopStats, now: float) -> None:
        window = max(now - stats.window_started, 1e-9)
        fps = stats.window_frames / window
        people = stats.window_people / max(stats.window_frames, 1)
        record = {
            "type": "progress",
            **stats.summary(now, self.source),
            "window_fps": round(fps, 2),
            "window_people_per_frame": round(people, 2),
        }
        self.sink.write(record)
        log.info(
            "frames %d  fps %.1f  people/frame %.1f  dropped %d  source %s",
            stats.frames,
            fps,
            people,
            self.source.stats.dropped,
            self.source.stats.state,
        )
        stats.window_started, stats.window_frames, stats.window_people = now, 0, 0

    def _respect_fps_cap(self, started: float, stop: threading.Event) -> float:
        """Live sources only: wait out the rest of the frame period, then take the newest frame.
        Returns the milliseconds waited.

        File sources are never capped, so a clip is processed deterministically, every frame.
        """
        if not self.fps_cap or not self.source.live:
            return 0.0
        remaining = 1.0 / self.fps_cap - (self.clock() - started)
        if remaining > 0:
            stop.wait(remaining)
        return max(remaining, 0.0) * 1e3


def build_pipeline(
    settings: Settings,
    source: FrameSource,
    sink: Sink,
    *,
    detector: PersonDetector | None = None,
    gated: bool | None = None,
    report_every_s: float = 5.0,
    frame_records: bool = False,
    tick: Callable[[], None] | None = None,
    restored: DayState | None = None,
    cooldowns: SavedCooldowns | None = None,
) -> Pipeline:
    """The frame loop as configured: the daemon, the benchmark and the tests all build it here.

    ``restored`` is the day state (store occupancy, today's totals) a previous run saved;
    ``cooldowns`` where the alert rules' cooldowns outlive the run (the daemon's alone reach
    the staff, so only it passes them).

    ``detector`` defaults to the configured one; ``gated`` forces the motion gate on or off
    (``None``: as ``[motion_gate] enabled`` says; on, it always uses the configured thresholds).
    """
    gate_on = settings.motion_gate.enabled if gated is None else gated
    gate = MotionGate(MotionGateSettings.from_config(settings.motion_gate)) if gate_on else None
    detector = detector or build_detector(settings)
    return Pipeline(
        source,
        detector,
        lambda aspect, point: CameraView.from_settings(
            settings, aspect, point, restored=restored, cooldowns=cooldowns
        ),
        sink,
        fps_cap=settings.camera.fps_cap,
        report_every_s=report_every_s,
        frame_records=frame_records,
        tick=tick,
        gate=gate,
    )

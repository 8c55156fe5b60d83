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

from intentcam.capture.frame import Frame, FrameSource
from intentcam.detect.detections import Detections
from intentcam.detect.ssd import SsdPersonDetector
from intentcam.scheduler import MotionGate
from intentcam.sinks import Sink
from intentcam.telemetry.health import StageTimings
from intentcam.track.stage import TrackingStage

#: Builds the tracking stage once the first frame tells the aspect ratio (width / height).
StageFactory = Callable[[float], TrackingStage]

log = logging.getLogger(__name__)

#: How long one ``read`` may block before the loop re-checks whether it should stop.
READ_TIMEOUT_S = 0.5


@dataclass
class Heartbeat:
    """Monotonic time of the last processed frame, for the watchdog and the health report."""

    frames: int = 0
    last_progress: float = 0.0

    def beat(self, now: float) -> None:
        self.frames += 1
        self.last_progress = now


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


def frame_record(frame: Frame, run_origin: float, detections: Detections,
                 stage: TrackingStage) -> dict[str, Any]:
    """One frame's people: detections and confirmed tracks (normalised boxes, no image data)."""
    tracked = stage.last
    assert tracked is not None
    # float64 before rounding, or float32 noise (0.8495000004768372) reaches the JSON.
    return {
        "type": "frame",
        "frame": frame.index,
        "t": round(frame.timestamp - run_origin, 3),
        "people": len(detections),
        "boxes": detections.boxes.astype(float).round(4).tolist(),
        "scores": detections.scores.astype(float).round(3).tolist(),
        "tracks": tracked.ids.tolist(),
        "track_boxes": tracked.boxes.astype(float).round(4).tolist(),
    }


@dataclass
class Pipeline:
    """Runs frames from ``source`` through ``detector`` into ``sink`` until stopped."""

    source: FrameSource
    detector: SsdPersonDetector
    stage_factory: StageFactory
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
    stage: TrackingStage | None = None

    def run(self, stop: threading.Event, max_frames: int | None = None) -> dict[str, Any]:
        """Process frames until the source ends, ``max_frames`` is reached or ``stop`` is set.

        Returns the run summary (also written to the sink as a ``summary`` record).
        """
        now = self.clock()
        stats = LoopStats(started=now, window_started=now)
        run_origin: float | None = None
        while not stop.is_set() and (max_frames is None or stats.frames < max_frames):
            if self.tick is not None:
                self.tick()
            read_started = self.clock()
            frame = self.source.read(timeout=READ_TIMEOUT_S)
            if frame is not None:
                self.timings.add("capture", (self.clock() - read_started) * 1e3)
            if frame is None:
                if self.source.finished:
                    break
                continue
            started = self.clock()
            if run_origin is None:
                run_origin = frame.timestamp
            if self.stage is None:
                width, height = frame.size
                self.stage = self.stage_factory(width / height)
            if self._must_detect(frame):
                detections = self.detector.detect(frame.image, min_score=self.stage.low_score)
                records = self.stage.process(detections, frame.timestamp, frame.image)
                invokes = self.detector.last.invokes
                people = int((detections.scores >= self.detector.settings.score_threshold).sum())
            else:
                records = self.stage.coast(frame.timestamp)
                detections, invokes = Detections.empty(), 0
                people = len(self.stage.last.ids) if self.stage.last is not None else 0
                stats.gated += 1
            analysed_at = self.clock()
            for record in records:
                self.sink.write(record)
            self._time_stages(started, analysed_at, detected=invokes > 0)
            if self.frame_records:
                self.sink.write(frame_record(frame, run_origin, detections, self.stage))
            stats.frames += 1
            stats.window_frames += 1
            stats.people += people
            stats.window_people += people
            stats.invokes += invokes
            now = self.clock()
            self.heartbeat.beat(now)
            if now - stats.window_started >= self.report_every_s:
                self._report(stats, now)
            self._respect_fps_cap(started, stop)
        if self.stage is not None:
            for record in self.stage.finish():
                self.sink.write(record)
        summary = {"type": "summary", **stats.summary(self.clock(), self.source)}
        self.sink.write(summary)
        return summary

    def _must_detect(self, frame: Frame) -> bool:
        if self.gate is None:
            return True
        assert self.stage is not None
        tracker = self.stage.tracker
        run = self.gate.should_detect(frame.image, frame.timestamp,
                                      tracks_present=tracker.confirmed_count() > 0,
                                      tracks_moving=tracker.moving(self.gate.settings.moving_speed))
        if run:
            self.gate.detected(frame.timestamp)
        return run

    def _time_stages(self, started: float, analysed_at: float, *, detected: bool) -> None:
        if detected:
            last = self.detector.last
            self.timings.add("preprocess", last.preprocess_ms)
            self.timings.add("invoke", last.invoke_ms)
            self.timings.add("detect_post", last.postprocess_ms)
        stage = self.stage
        assert stage is not None
        if detected:
            self.timings.add("tracking", stage.tracking_ms)
            if stage.faces is not None:
                self.timings.add("sentiment", stage.sentiment_ms)
        self.timings.add("analytics", stage.analytics_ms)
        self.timings.add("telemetry", (self.clock() - analysed_at) * 1e3)
        self.timings.add("frame", (self.clock() - started) * 1e3)

    def _report(self, stats: LoopStats, now: float) -> None:
        window = max(now - stats.window_started, 1e-9)
        fps = stats.window_frames / window
        people = stats.window_people / max(stats.window_frames, 1)
        record = {"type": "progress", **stats.summary(now, self.source),
                  "window_fps": round(fps, 2), "window_people_per_frame": round(people, 2)}
        self.sink.write(record)
        log.info("frames %d  fps %.1f  people/frame %.1f  dropped %d  source %s",
                 stats.frames, fps, people, self.source.stats.dropped, self.source.stats.state)
        stats.window_started, stats.window_frames, stats.window_people = now, 0, 0

    def _respect_fps_cap(self, started: float, stop: threading.Event) -> None:
        """Live sources only: wait out the rest of the frame period, then take the newest frame.

        File sources are never capped, so a clip is processed deterministically, every frame.
        """
        if not self.fps_cap or not self.source.live:
            return
        remaining = 1.0 / self.fps_cap - (self.clock() - started)
        if remaining > 0:
            stop.wait(remaining)

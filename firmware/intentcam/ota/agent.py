"""OTA in the running daemon: install in the background, hot swap between two frames, probation.

A request (MQTT ``ota_install``, the hawkBit DDI client, or ``intentcam ota install`` through the
inbox folder) runs download, verify, anti-downgrade, unpack, self-test and model loading on a
worker thread while the camera keeps running. The frame loop then swaps the detector between two
frames (:meth:`OtaAgent.tick`): tracks, sessions, windows and ``seq`` continue. The new model is
on probation for ``ota.probation_s`` seconds against the previous model's frame rate, time per
detection and people per frame, with any exception from it caught; it is committed, or the
previous detector (still in memory) is swapped back and the version rolled back, with the reason.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intentcam.detect import PersonDetector
from intentcam.detect.base import DetectStats
from intentcam.detect.detections import Detections
from intentcam.durable import atomic_write
from intentcam.models.manifest import OperatingPoint
from intentcam.ota.bundle import BundleError
from intentcam.ota.download import Download
from intentcam.ota.install import Installer, Prepared
from intentcam.ota.store import Installed, describe
from intentcam.records import iso

log = logging.getLogger(__name__)

INBOX = "ota-inbox"
STATUS_FILE = "ota-status.json"
#: Called with ``(ok, reason)`` when a request ends (committed, or refused / rolled back).
Done = Callable[[bool, str], None]
#: How long a stopping daemon waits for an install being prepared (a self-test takes seconds;
#: a slow download is abandoned rather than holding up the stop).
STOP_WAIT_S = 10.0


class GuardedDetector:
    """A detector on probation: any exception is caught, counted and turned into no detections."""

    def __init__(self, inner: PersonDetector) -> None:
        self.inner = inner
        self.error: str | None = None

    def detect(self, image: Any, min_score: float | None = None, near: bool = False) -> Detections:
        try:
            return self.inner.detect(image, min_score=min_score, near=near)
        except Exception as exc:  # noqa: BLE001 - the new model failing is what probation catches
            if self.error is None:
                self.error = f"detector raised {type(exc).__name__}: {exc}"
            return Detections.empty()

    @property
    def last(self) -> DetectStats:
        return self.inner.last

    @property
    def score_threshold(self) -> float:
        return self.inner.score_threshold

    @property
    def operating_point(self) -> OperatingPoint:
        return self.inner.operating_point

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()


#: Fewest timed detections on each side of a swap to compare the two models' speed by.
MIN_TIMED_DETECTIONS = 3


@dataclass(frozen=True)
class LoopCount:
    """The frame loop's running totals, as the agent samples them between two frames."""

    frames: int
    people: int
    #: Frames the detector ran on (the motion gate skips it on still ones) and the seconds it
    #: took: the loop's frame rate alone hides a slower model while the gate skips most frames
    #: (an empty store at night, when updates are pushed).
    detections: int = 0
    detect_s: float = 0.0
    #: Seconds the loop spent on frames (not waiting for the camera).
    busy_s: float = 0.0


@dataclass(frozen=True)
class Sample:
    at: float
    count: LoopCount


@dataclass(frozen=True)
class Performance:
    """A model's showing over a stretch of frames; ``None`` where the stretch cannot tell."""

    fps: float | None = None
    #: Frames a second the loop could have done, had the camera sent them as fast.
    capacity: float | None = None
    #: People per frame (``None``: no frame).
    rate: float | None = None
    #: Milliseconds per detection.
    detect_ms: float | None = None

    @staticmethod
    def between(first: Sample, last: Sample) -> Performance:
        frames = last.count.frames - first.count.frames
        elapsed = last.at - first.at
        detections = last.count.detections - first.count.detections
        busy = last.count.busy_s - first.count.busy_s
        return Performance(
            fps=frames / elapsed if elapsed > 0 else None,
            capacity=frames / busy if busy > 0 else None,
            rate=(last.count.people - first.count.people) / frames if frames else None,
            detect_ms=(last.count.detect_s - first.count.detect_s) * 1e3 / detections
            if detections >= MIN_TIMED_DETECTIONS
            else None,
        )


def _too_slow_for_the_camera(seen: Performance, baseline: Performance, ratio: float) -> str | None:
    """Whether the loop's frame rate fell below ``ratio`` of the rate before the swap *because
    of the loop*: a camera that sends fewer frames (longer exposures at dusk) leaves the loop
    waiting, its capacity (frames per busy second) intact, and is no reason to roll back."""
    if not baseline.fps or seen.fps is None or seen.fps >= ratio * baseline.fps:
        return None
    needed = min(baseline.fps, baseline.capacity or baseline.fps)
    if seen.capacity is not None and seen.capacity >= ratio * needed:
        return None
    could = f" (busy, it could do {seen.capacity:.1f})" if seen.capacity is not None else ""
    return f"{seen.fps:.1f} fps{could}, below {ratio:.0%} of {baseline.fps:.1f}"


def _too_slow_to_detect_every_frame(
    seen: Performance, baseline: Performance, ratio: float
) -> str | None:
    """Whether the new model, were it to run on every frame, would fall below ``ratio`` of the
    frame rate the loop kept before the swap (or of the previous model's own rate of detections,
    when that could not keep up either). The loop's frame rate alone hides this while the motion
    gate skips most frames (an empty store at night, when updates go out); a slower model that
    still keeps up with the camera passes."""
    if not (baseline.fps and baseline.detect_ms and seen.detect_ms):
        return None
    could = 1e3 / seen.detect_ms
    needed = min(baseline.fps, 1e3 / baseline.detect_ms)
    if could >= ratio * needed:
        return None
    return (
        f"{seen.detect_ms:.0f} ms per detection: {could:.1f} fps with the detector on every "
        f"frame, below {ratio:.0%} of {needed:.1f} (before: {baseline.fps:.1f} fps, "
        f"{baseline.detect_ms:.0f} ms per detection)"
    )


def _sees_fewer_people(rate: float, baseline: Performance, ratio: float) -> str | None:
    """Whether the new model finds fewer than ``ratio`` of the people per frame the previous
    one did (judged only when that one saw at least 0.2 a frame)."""
    if baseline.rate is None or baseline.rate < 0.2 or rate >= ratio * baseline.rate:
        return None
    return (
        f"{rate:.2f} people per frame, below {ratio:.0%} of the previous model's "
        f"{baseline.rate:.2f}"
    )


@dataclass
class Probation:
    """A swapped-in model under watch, and what to go back to."""

    installed: Installed
    previous: PersonDetector | None
    guard: GuardedDetector
    started: Sample
    #: The previous model over the ``probation_s`` before the swap (nothing known: a trial
    #: loaded at start).
    baseline: Performance
    done: Done | None


@dataclass
class Request:
    job: Download | None
    done: Done | None
    #: ``install`` or ``rollback``.
    action: str = "install"


@dataclass
class OtaAgent:
    """See the module docstring. ``publish`` sends the ``ota`` body (retained topic)."""

    installer: Installer
    publish: Callable[[dict[str, Any]], None]
    #: Swaps the detector in the frame loop: (new detector, its operating point) -> None.
    swap: Callable[[PersonDetector], None]
    #: The frame loop's running totals now.
    heartbeat: Callable[[], LoopCount]
    loaded: Installed | None = None
    clock: Callable[[], float] = time.monotonic
    body: dict[str, Any] = field(default_factory=dict)
    probation: Probation | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _busy: bool = False
    _ready: tuple[Prepared, Done | None] | None = None
    _samples: deque[Sample] = field(default_factory=lambda: deque(maxlen=4096))
    _next_inbox: float = 0.0
    _worker: threading.Thread | None = None

    @property
    def settings(self) -> Any:
        return self.installer.settings

    @property
    def inbox(self) -> Path:
        return self.installer.store.root / INBOX

    # --- state ------------------------------------------------------------------------------

    def report(self, state: str, details: dict[str, Any]) -> None:
        """Publish a state (retained ``ota`` topic) and keep it for ``status`` and the CLI."""
        ota_state = self.installer.store.load_state()
        body: dict[str, Any] = {
            "state": state,
            "current": describe(self.loaded),
            "committed": describe(ota_state.committed),
            "trial": describe(ota_state.trial),
            "previous": [describe(item) for item in ota_state.previous],
            "serial": ota_state.serials.get("person_detector", 0),
            "changed": iso(time.time()),
        }
        body.update({key: value for key, value in details.items() if value is not None})
        self.body = body
        log.info(
            "ota: %s%s",
            state,
            "".join(f" {key}={value}" for key, value in details.items() if value is not None),
        )
        try:
            atomic_write(self.installer.store.root / STATUS_FILE, json.dumps(body).encode())
        except OSError as exc:
            log.warning("ota: cannot write %s: %s", STATUS_FILE, exc)
        self.publish(body)

    # --- requests (any thread) --------------------------------------------------------------

    def request_install(self, job: Download, done: Done | None = None) -> str | None:
        """Start an install in the background; the reason it cannot start, or ``None``."""
        with self._lock:
            if self._busy:  # from the request until commit, rollback or failure
                return "another update is in progress"
            self._busy = True
        self._worker = threading.Thread(
            target=self._prepare, args=(job, done), name="ota-install", daemon=True
        )
        self._worker.start()
        return None

    def stop(self, wait_s: float = STOP_WAIT_S) -> None:
        """On the way out: wait (at most ``wait_s``) for an install being prepared, since exiting
        under its self-test's inference can abort the interpreter's teardown. What it prepared
        is never swapped in: the running model stays, and a new request starts over."""
        worker = self._worker
        if worker is None or not worker.is_alive():
            return
        log.info("ota: stopping; waiting up to %.0f s for the install being prepared", wait_s)
        worker.join(wait_s)
        if worker.is_alive():
            log.warning("ota: the install being prepared is abandoned; the running model stays")

    def _prepare(self, job: Download, done: Done | None) -> None:
        try:
            prepared = self.installer.prepare(job)
        except BundleError as exc:
            self._fail(exc.step, exc.reason, done)
            return
        except Exception as exc:  # noqa: BLE001 - the daemon must survive any bad update
            log.exception("ota: install failed")
            self._fail("install", f"{type(exc).__name__}: {exc}", done)
            return
        with self._lock:
            self._ready = (prepared, done)

    def _fail(self, step: str, reason: str, done: Done | None) -> None:
        self.report("failed", {"step": step, "reason": reason})
        with self._lock:
            self._busy = False
        if done is not None:
            done(False, f"{step}: {reason}")

    # --- frame-loop thread ------------------------------------------------------------------

    def tick(self, current: PersonDetector) -> None:
        """Between two frames: sample, read the inbox, swap a ready model, judge probation."""
        now = self.clock()
        sample = Sample(now, self.heartbeat())
        self._samples.append(sample)
        if now >= self._next_inbox:
            self._next_inbox = now + 1.0
            self._read_inbox()
        with self._lock:
            ready, self._ready = self._ready, None
        if ready is not None:
            self._swap_in(ready[0], ready[1], current)
        if self.probation is not None:
            self._judge(sample)

    def start_trial(self, detector: PersonDetector, installed: Installed) -> PersonDetector:
        """A trial loaded at start (installed while no daemon ran): probation without baseline."""
        guard = GuardedDetector(detector)
        # Called before the frame loop exists: its heartbeat starts at zero.
        self.probation = Probation(
            installed, None, guard, Sample(self.clock(), LoopCount(0, 0)), Performance(), None
        )
        self._busy = True
        return guard  # type: ignore[return-value]

    def announce_start(self, rolled_back: str | None, degraded: str | None) -> None:
        """The first ``ota`` state of a run: on probation, just rolled back, or idle."""
        if self.probation is not None:
            version = self.probation.installed.version
            self.report("probation", {"version": version, "probation_s": self._window()})
        elif rolled_back:
            self.report("rolled_back", {"reason": rolled_back})
        else:
            self.report("idle", {"reason": degraded})

    def _window(self) -> float:
        return float(self.settings.ota.probation_s)

    def _baseline(self, now: float) -> Performance:
        window = [s for s in self._samples if s.at >= now - self._window()]
        if len(window) < 2 or window[-1].at - window[0].at < 1.0:
            return Performance()
        return Performance.between(window[0], window[-1])

    def _swap_in(self, prepared: Prepared, done: Done | None, current: PersonDetector) -> None:
        started = time.perf_counter()
        baseline = self._baseline(self.clock())
        try:
            self.installer.switch(prepared, started=True)
        except OSError as exc:
            self._fail("switch", f"cannot switch: {exc.strerror or exc}", done)
            return
        guard = GuardedDetector(prepared.detector)
        self.swap(guard)  # type: ignore[arg-type]
        swap_ms = (time.perf_counter() - started) * 1e3
        previous = current.inner if isinstance(current, GuardedDetector) else current
        self.probation = Probation(
            prepared.installed,
            previous,
            guard,
            Sample(self.clock(), self.heartbeat()),
            baseline,
            done,
        )
        self.loaded = prepared.installed
        self.report(
            "probation",
            {
                "version": prepared.installed.version,
                "swap_ms": round(swap_ms, 2),
                "frames_skipped": 0,
                "probation_s": self._window(),
                "baseline_fps": round(baseline.fps, 2) if baseline.fps else None,
                "baseline_detect_ms": round(baseline.detect_ms, 1) if baseline.detect_ms else None,
            },
        )

    def _judge(self, now: Sample) -> None:
        probation = self.probation
        assert probation is not None
        if probation.guard.error is not None:
            self._roll_back(probation, probation.guard.error)
            return
        elapsed = now.at - probation.started.at
        if elapsed < self._window():
            return
        seen = Performance.between(probation.started, now)
        problem = self._shortfall(seen, probation.baseline, elapsed)
        if problem:
            self._roll_back(probation, problem)
            return
        self.swap(probation.guard.inner)
        self.installer.commit()
        self.probation = None
        with self._lock:
            self._busy = False
        reason = f"probation passed: {seen.fps or 0:.1f} fps, {seen.rate or 0:.2f} people per frame"
        if seen.detect_ms is not None:
            reason += f", {seen.detect_ms:.0f} ms per detection"
        self.report("committed", {"version": probation.installed.version, "reason": reason})
        if probation.done is not None:
            probation.done(True, reason)

    def _shortfall(self, seen: Performance, baseline: Performance, elapsed: float) -> str | None:
        """Why the model on probation falls short of the one before it (``None``: it does not)."""
        ota = self.settings.ota
        if seen.rate is None:
            return f"no frame processed in {elapsed:.0f} s of probation"
        return (
            _too_slow_for_the_camera(seen, baseline, ota.min_fps_ratio)
            or _too_slow_to_detect_every_frame(seen, baseline, ota.min_fps_ratio)
            or _sees_fewer_people(seen.rate, baseline, ota.min_detection_ratio)
        )

    def _roll_back(self, probation: Probation, reason: str) -> None:
        state = self.installer.rollback(reason)
        if probation.previous is not None:
            self.swap(probation.previous)
            self.loaded = state.committed
        else:
            # Started in trial: the previous model is not in memory; load what is committed now.
            from intentcam.ota.startup import load_active

            active = load_active(self.installer)
            self.swap(active.detector)
            self.loaded = active.installed
        self.probation = None
        with self._lock:
            self._busy = False
        self.report("rolled_back", {"version": probation.installed.version, "reason": reason})
        if probation.done is not None:
            probation.done(False, f"rolled back: {reason}")

    def roll_back_committed(self, reason: str) -> str | None:
        """``intentcam ota rollback`` against a running daemon: back to the previous version."""
        if self.probation is not None:
            self._roll_back(self.probation, reason)
            return None
        state = self.installer.store.load_state()
        if state.committed is None:
            return "nothing to roll back: the packaged models run"
        from intentcam.ota.startup import load_active

        self.installer.rollback(reason)
        active = load_active(self.installer)
        self.swap(active.detector)
        self.loaded = active.installed
        self.report("rolled_back", {"reason": reason})
        return None

    # --- inbox: requests from ``intentcam ota`` on the same device ---------------------------

    def _read_inbox(self) -> None:
        if not self.inbox.is_dir():
            return
        for path in sorted(self.inbox.glob("*.json")):
            try:
                request = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                log.warning("ota: unreadable inbox request %s: %s", path.name, exc)
                request = None
            path.unlink(missing_ok=True)
            if not isinstance(request, dict):
                continue
            if request.get("action") == "rollback":
                problem = self.roll_back_committed(str(request.get("reason") or "requested"))
                if problem:
                    self.report("failed", {"step": "rollback", "reason": problem})
            elif request.get("action") == "install" and isinstance(request.get("url"), str):
                problem = self.request_install(Download(request["url"], request.get("sha256")))
                if problem:
                    self.report("failed", {"step": "request", "reason": problem})

"""Live sources: a capture thread, a one-slot latest-frame buffer, reconnection with backoff.

A camera produces frames whether or not we keep up. Queuing them would make the analytics run
ever further behind real time, so the capture thread overwrites a single slot and counts what it
overwrote as dropped; the main loop always gets the newest frame. When the device or stream goes
away, the thread closes it, waits (exponential backoff with jitter) and opens it again, forever,
until the source is closed.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from intentcam.capture.frame import Frame, SourceStats

log = logging.getLogger(__name__)


class Grabber(Protocol):
    """One opened device or stream; ``read`` blocks for the next image, ``None`` when it broke."""

    def read(self) -> np.ndarray | None: ...

    def release(self) -> None: ...


#: Opens a device or stream, raising an exception (any) when it is not there.
GrabberFactory = Callable[[], Grabber]


class LatestFrameSlot:
    """Holds the newest frame only. ``put`` never blocks; ``take`` waits for a frame not yet taken."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._frame: Frame | None = None
        self._fresh = False
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        with self._condition:
            if self._fresh:
                self.dropped += 1
            self._frame = frame
            self._fresh = True
            self._condition.notify_all()

    def take(self, timeout: float | None = None) -> Frame | None:
        with self._condition:
            if not self._condition.wait_for(lambda: self._fresh, timeout=timeout):
                return None
            self._fresh = False
            return self._frame

    def wake(self) -> None:
        """Release readers waiting in :meth:`take` (used on close)."""
        with self._condition:
            self._condition.notify_all()


@dataclass
class Backoff:
    """Exponential delays with jitter: ``initial * 2**n`` capped at ``maximum``, times U(0.5, 1)."""

    initial: float = 0.5
    maximum: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    _attempt: int = 0

    def next_delay(self) -> float:
        base = min(self.maximum, self.initial * (2**self._attempt))
        self._attempt += 1
        return base * self.rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        self._attempt = 0


class LiveSource:
    """A capture thread around a :class:`Grabber` factory; see the module docstring."""

    live = True

    def __init__(
        self, name: str, open_grabber: GrabberFactory, backoff: Backoff | None = None
    ) -> None:
        self.name = name
        self.stats = SourceStats()
        self._open_grabber = open_grabber
        self._backoff = backoff or Backoff()
        self._slot = LatestFrameSlot()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"capture:{name}", daemon=True)
        self._thread.start()

    @property
    def finished(self) -> bool:
        return False

    def read(self, timeout: float | None = None) -> Frame | None:
        if self._stop.is_set():
            return None
        frame = self._slot.take(timeout)
        self.stats.dropped = self._slot.dropped
        return frame

    def close(self) -> None:
        self._stop.set()
        self._slot.wake()
        self._thread.join(timeout=5.0)
        self.stats.state = "closed"

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            grabber = self._connect()
            if grabber is None:
                return
            try:
                index = self._pump(grabber, index)
            finally:
                grabber.release()
            if not self._stop.is_set():
                self.stats.state = "reconnecting"
                self.stats.reconnects += 1
                delay = self._backoff.next_delay()
                log.warning(
                    "source %s: stream lost (%s); reconnecting in %.1f s",
                    self.name,
                    self.stats.last_error,
                    delay,
                )
                self._stop.wait(delay)

    def _connect(self) -> Grabber | None:
        while not self._stop.is_set():
            try:
                grabber = self._open_grabber()
            except Exception as exc:  # noqa: BLE001 - any failure to open is retried the same way
                self.stats.last_error = str(exc) or type(exc).__name__
                self.stats.state = "reconnecting"
                delay = self._backoff.next_delay()
                log.warning(
                    "source %s: cannot open (%s); retrying in %.1f s",
                    self.name,
                    self.stats.last_error,
                    delay,
                )
                self._stop.wait(delay)
                continue
            self.stats.state = "streaming"
            log.info("source %s: streaming", self.name)
            return grabber
        return None

    def _pump(self, grabber: Grabber, index: int) -> int:
        while not self._stop.is_set():
            image = grabber.read()
            if image is None:
                self.stats.last_error = "read failed or stream ended"
                return index
            self._backoff.reset()
            self._slot.put(Frame(index, time.monotonic(), image))
            self.stats.captured += 1
            index += 1
        return index

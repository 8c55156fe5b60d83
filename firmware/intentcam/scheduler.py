"""The scheduler's motion gate: run the detector only when something may have changed.

A frame is shrunk to a small grey thumbnail (``size``, blurred against sensor noise) and compared
with the thumbnail of the frame the detector last ran on. The detector runs when

- enough pixels changed (``min_changed`` of them by more than ``pixel_threshold`` grey levels): a
  comparison with the last *detected* frame, so slow motion adds up until it counts;
- a confirmed track is moving (Kalman speed above ``moving_speed`` frame heights per second),
  so nobody walking through the view is missed between two detections;
- tracks are present and ``recheck_s`` passed (people standing still are re-confirmed);
- a track is starting (tentative, waiting for its confirming hits): someone just came into view
  is confirmed on consecutive frames, not over seconds of skipped ones; without this, a shopper
  already at a shelf when the camera starts, who barely moves, would be confirmed late and their
  first reach lost;
- someone is at a shelf zone: their hands are watched frame by frame (poses need this frame's
  box), and a reach barely changes a thumbnail;
- ``max_skip_s`` passed (a safety net against a gate that never opens).

Skipped frames still advance the analytics with the last known positions, so dwell, occupancy
and heatmaps keep their time; the tracker itself simply waits for the next detection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from intentcam.config import MotionGateConfig


@dataclass(frozen=True)
class MotionGateSettings:
    """See the module docstring; defaults and bounds live in ``[motion_gate]`` of the config."""

    pixel_threshold: int
    min_changed: float
    moving_speed: float
    recheck_s: float
    max_skip_s: float
    #: Thumbnail (width, height) the frames are compared at.
    size: tuple[int, int] = (64, 36)

    @classmethod
    def from_config(cls, config: MotionGateConfig | None = None) -> MotionGateSettings:
        """The settings of ``[motion_gate]`` (its defaults when ``config`` is ``None``)."""
        config = config or MotionGateConfig()
        return cls(
            pixel_threshold=config.pixel_threshold,
            min_changed=config.min_changed,
            moving_speed=config.moving_speed,
            recheck_s=config.recheck_s,
            max_skip_s=config.max_skip_s,
        )


@dataclass
class MotionGate:
    """Decides per frame whether the detector must run; see the module docstring."""

    settings: MotionGateSettings = field(default_factory=MotionGateSettings.from_config)
    skipped: int = 0
    _reference: np.ndarray | None = None
    _last_detection: float = float("-inf")
    _small: np.ndarray | None = None

    def thumbnail(self, image: np.ndarray) -> np.ndarray:
        small = cv2.resize(image, self.settings.size, interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        return cv2.GaussianBlur(gray, (3, 3), 0)

    def should_detect(
        self,
        image: np.ndarray,
        now: float,
        *,
        tracks_present: bool,
        tracks_moving: bool,
        tracks_starting: bool = False,
        people_at_shelves: bool = False,
    ) -> bool:
        """Whether to run the detector on this frame (call :meth:`detected` when it ran)."""
        self._small = self.thumbnail(image)
        s = self.settings
        since = now - self._last_detection
        run = (
            self._reference is None
            or tracks_moving
            or tracks_starting
            or people_at_shelves
            or since >= s.max_skip_s
            or (tracks_present and since >= s.recheck_s)
            or self._changed() >= s.min_changed
        )
        if not run:
            self.skipped += 1
        return run

    def _changed(self) -> float:
        assert self._small is not None and self._reference is not None
        difference = cv2.absdiff(self._small, self._reference)
        return float(np.count_nonzero(difference > self.settings.pixel_threshold)) / difference.size

    def detected(self, now: float) -> None:
        """The detector ran on the frame just checked: it becomes the new reference."""
        self._reference = self._small
        self._last_detection = now

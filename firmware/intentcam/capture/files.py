"""File sources: a video file or a sorted folder of images, every frame, fast or at real-time pace."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from intentcam.capture.frame import Frame, SourceStats
from intentcam.errors import SourceError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
Pace = Literal["fast", "realtime"]


class _Pacer:
    """Sleeps so clip time advances with the wall clock (``realtime``); does nothing when ``fast``."""

    def __init__(
        self,
        pace: Pace,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pace = pace
        self._sleep = sleep
        self._clock = clock
        self._start: float | None = None

    def wait_for(self, clip_seconds: float) -> None:
        if self.pace == "fast":
            return
        now = self._clock()
        if self._start is None:
            self._start = now - clip_seconds
        delay = self._start + clip_seconds - now
        if delay > 0:
            self._sleep(delay)


def container_fps(capture: cv2.VideoCapture) -> float | None:
    """The frame rate an opened video's container states, or ``None`` where it states none
    usable (0, or the nonsense some muxers write)."""
    fps = capture.get(cv2.CAP_PROP_FPS)
    return fps if 0 < fps < 1000 else None


class VideoFileSource:
    """Every frame of a video file, timestamped by the clip's own clock."""

    live = False

    def __init__(self, path: Path, pace: Pace = "fast") -> None:
        self.name = str(path)
        self.stats = SourceStats()
        if not path.is_file():
            raise SourceError(f"{path}: video file not found")
        # One decoding thread: each extra one holds its own frames (about 2 MB at 720p), and a
        # clip's frames are consumed no faster than the detector runs anyway.
        self._capture = cv2.VideoCapture(str(path), cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, 1])
        if not self._capture.isOpened():
            raise SourceError(f"{path}: cannot open as video (unsupported or corrupt file)")
        fps = container_fps(self._capture)
        self._frame_period = 1.0 / fps if fps else 0.04
        self._origin = time.monotonic()
        self._last_clip_time = -1.0
        self._index = 0
        self._finished = False
        self._pacer = _Pacer(pace)
        self.stats.state = "streaming"

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def fps(self) -> float:
        """The clip's nominal frame rate."""
        return 1.0 / self._frame_period

    def read(self, timeout: float | None = None) -> Frame | None:
        if self._finished:
            return None
        if not self._capture.grab():
            self._finish()
            return None
        clip_time = self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        # Containers with broken timestamps repeat or rewind them; never let time go backwards.
        if clip_time <= self._last_clip_time:
            clip_time = self._last_clip_time + self._frame_period
        ok, image = self._capture.retrieve()
        if not ok or image is None:
            self.stats.errors += 1
            self._finish()
            return None
        if self._index == 0 and image.ndim != 3:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        self._last_clip_time = clip_time
        self._pacer.wait_for(clip_time)
        frame = Frame(self._index, self._origin + clip_time, image)
        self._index += 1
        self.stats.captured += 1
        return frame

    def _finish(self) -> None:
        if self._index == 0:
            self.stats.last_error = "no decodable frames"
            raise SourceError(f"{self.name}: no decodable video frames (corrupt or not a video)")
        self._finished = True
        self.stats.state = "finished"
        return None

    def close(self) -> None:
        self._capture.release()
        if self.stats.state != "finished":
            self.stats.state = "closed"


class ImageFolderSource:
    """The images of a folder in name order (or a single image), at ``fps`` frames per second."""

    live = False

    def __init__(self, path: Path, fps: float = 10.0, pace: Pace = "fast") -> None:
        self.name = str(path)
        self.stats = SourceStats()
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            files = [path]
        else:
            raise SourceError(f"{path}: no such image folder or file")
        if not files:
            raise SourceError(f"{path}: folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self._files = files
        self._period = 1.0 / fps
        self._origin = time.monotonic()
        self._position = 0
        self._index = 0
        self._pacer = _Pacer(pace)
        self.stats.state = "streaming"

    @property
    def finished(self) -> bool:
        return self._position >= len(self._files)

    def read(self, timeout: float | None = None) -> Frame | None:
        while self._position < len(self._files):
            path = self._files[self._position]
            self._position += 1
            image = read_image(path, strict=False)
            if image is None:
                self.stats.errors += 1
                self.stats.last_error = f"{path.name}: not a readable image"
                log.warning("skipping %s: not a readable image", path)
                continue
            clip_time = self._index * self._period
            self._pacer.wait_for(clip_time)
            frame = Frame(self._index, self._origin + clip_time, image)
            self._index += 1
            self.stats.captured += 1
            return frame
        self.stats.state = "finished"
        return None

    def close(self) -> None:
        if self.stats.state != "finished":
            self.stats.state = "closed"


def read_image(path: Path, *, strict: bool = True) -> np.ndarray | None:
    """A BGR image from disk; with ``strict`` a one-line :class:`SourceError` instead of ``None``."""
    if not path.exists():
        if strict:
            raise SourceError(f"{path}: file not found")
        return None
    if path.is_dir():
        if strict:
            raise SourceError(f"{path}: is a folder, not an image")
        return None
    # imdecode over a byte read avoids OpenCV's stderr warnings and handles non-ASCII paths.
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        if strict:
            raise SourceError(f"{path}: cannot read ({exc.strerror})") from None
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None and strict:
        raise SourceError(f"{path}: not a readable image (corrupt or unsupported format)")
    return image

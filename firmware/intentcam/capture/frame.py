"""The frame and the small interface every frame source implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

SourceState = Literal["starting", "streaming", "reconnecting", "finished", "closed"]


@dataclass(frozen=True)
class Frame:
    """One captured image. ``timestamp`` is monotonic seconds at capture (clip time for files)."""

    index: int
    timestamp: float
    image: np.ndarray  # BGR uint8, H x W x 3

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        height, width = self.image.shape[:2]
        return width, height


@dataclass
class SourceStats:
    """Counters for the health report; updated by the source, read by anyone."""

    state: SourceState = "starting"
    captured: int = 0
    #: Live sources: frames overwritten in the latest-frame slot before anyone read them.
    dropped: int = 0
    #: Files that could not be decoded (image folders) or failed reads.
    errors: int = 0
    reconnects: int = 0
    last_error: str = ""


class FrameSource(Protocol):
    """Frames from a camera, a stream, a video file or a folder of images."""

    name: str
    #: Live sources drop stale frames; file sources deliver every frame.
    live: bool
    stats: SourceStats

    def read(self, timeout: float | None = None) -> Frame | None:
        """The next frame, or ``None`` if none arrived within ``timeout`` or the source ended.

        After ``None``, :attr:`finished` tells the two apart.
        """
        ...

    @property
    def finished(self) -> bool:
        """True once a file source has delivered its last frame (live sources never finish)."""
        ...

    def close(self) -> None:
        """Release the device or file; safe to call twice."""
        ...

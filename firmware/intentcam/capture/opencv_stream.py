"""V4L2 devices and network streams (RTSP/HTTP) through OpenCV, as live-source grabbers."""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

from intentcam.errors import SourceError
from intentcam.secrets import redact_text

V4L2_INDEX = re.compile(r"^(?:/dev/video)?(\d+)$")


@dataclass
class OpenCVGrabber:
    """An opened ``cv2.VideoCapture``; ``read`` returns ``None`` once the stream breaks."""

    capture: cv2.VideoCapture

    def read(self) -> np.ndarray | None:
        ok, image = self.capture.read()
        return image if ok and image is not None else None

    def release(self) -> None:
        self.capture.release()


def open_v4l2(device: str, resolution: tuple[int, int], fps: float | None) -> OpenCVGrabber:
    """Open ``/dev/videoN`` (or ``N``) with V4L2, asking for a size, a rate and a tiny buffer."""
    match = V4L2_INDEX.match(device)
    target: int | str = int(match.group(1)) if match else device
    capture = cv2.VideoCapture(target, cv2.CAP_V4L2)
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"{device}: cannot open V4L2 camera (missing device or no permission)")
    width, height = resolution
    capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
    capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
    if fps:
        capture.set(cv2.CAP_PROP_FPS, fps)
    # The driver's own queue would hand us old frames; the latest-frame slot replaces it.
    capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return OpenCVGrabber(capture)


def open_url(url: str, timeout_s: float = 10.0) -> OpenCVGrabber:
    """Open an RTSP/HTTP stream with FFmpeg, with open and read timeouts so a dead link breaks."""
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(timeout_s * 1000),
    ]
    capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"{redact_url(url)}: cannot open stream")
    return OpenCVGrabber(capture)


def redact_url(url: str) -> str:
    """The URL without a password, for logs (``rtsp://user:secret@cam`` -> ``rtsp://user:***@cam``)."""
    return redact_text(url)

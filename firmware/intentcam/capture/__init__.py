"""Frame sources: video files, image folders, V4L2 cameras, RTSP/HTTP streams, picamera2.

:func:`open_source` turns ``[camera]`` config into a :class:`FrameSource`. File sources deliver
every frame; live sources run a capture thread with a latest-frame slot (see ``live``).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from intentcam.capture.files import IMAGE_SUFFIXES, ImageFolderSource, VideoFileSource, read_image
from intentcam.capture.frame import Frame, FrameSource, SourceStats
from intentcam.capture.live import Backoff, LatestFrameSlot, LiveSource
from intentcam.capture.opencv_stream import V4L2_INDEX, open_url, open_v4l2, redact_url
from intentcam.capture.picamera import PicameraGrabber, import_picamera2
from intentcam.config import CameraConfig
from intentcam.errors import SourceError

__all__ = [
    "Backoff",
    "Frame",
    "FrameSource",
    "ImageFolderSource",
    "LatestFrameSlot",
    "LiveSource",
    "SourceStats",
    "VideoFileSource",
    "detect_kind",
    "open_source",
    "read_image",
]

STREAM_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt"})


def detect_kind(source: str) -> str:
    """Which kind of source a ``camera.source`` string names (the ``kind = "auto"`` rule)."""
    if source == "picamera2" or source.startswith("picamera2:"):
        return "picamera2"
    if urlparse(source).scheme.lower() in STREAM_SCHEMES:
        return "url"
    if V4L2_INDEX.match(source) or source.startswith("/dev/"):
        return "v4l2"
    path = Path(source)
    if path.is_dir():
        return "images"
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return "images"
    if path.exists():
        return "file"
    raise SourceError(
        f"camera.source: {source} does not exist (expected a video file, an image "
        "folder, /dev/videoN, an rtsp:// or http:// URL, or picamera2)"
    )


def open_source(camera: CameraConfig) -> FrameSource:
    """Open the configured source; a one-line :class:`SourceError` if it cannot be opened."""
    kind = camera.kind if camera.kind != "auto" else detect_kind(camera.source)
    backoff = Backoff(maximum=camera.reconnect_max_s)
    if kind == "file":
        return VideoFileSource(Path(camera.source), camera.pace)
    if kind == "images":
        return ImageFolderSource(Path(camera.source), camera.images_fps, camera.pace)
    if kind == "v4l2":
        return LiveSource(
            camera.source,
            lambda: open_v4l2(camera.source, camera.resolution, camera.fps_cap),
            backoff,
        )
    if kind == "url":
        return LiveSource(redact_url(camera.source), lambda: open_url(camera.source), backoff)
    if kind == "picamera2":
        _, _, number = camera.source.partition(":")
        camera_num = int(number) if number.isdigit() else 0
        picamera2_class = import_picamera2()  # fail now, not in a retry loop, if it is missing
        return LiveSource(
            f"picamera2:{camera_num}",
            lambda: PicameraGrabber(
                camera_num,
                camera.resolution,
                camera.detect_resolution,
                camera.fps_cap,
                picamera2_class,
            ),
            backoff,
        )
    raise SourceError(f"camera.kind: unknown source kind {kind!r}")

"""Raspberry Pi camera through picamera2, reading the low-resolution stream for detection.

picamera2 needs libcamera's Python bindings, which only Raspberry Pi OS ships, so the import is
lazy and the class is injectable: tests drive this adapter with a stand-in that records the
configuration it receives. Verified on hardware: see README ("What was verified where").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from intentcam.errors import SourceError

INSTALL_HINT = (
    "picamera2 is not available: on Raspberry Pi OS install python3-picamera2 "
    "(apt) or the 'pi' extra (pip install 'intentcam[pi]')"
)


def import_picamera2() -> Callable[..., Any]:
    """The ``Picamera2`` class, or a one-line :class:`SourceError` saying how to get it."""
    try:
        from picamera2 import Picamera2  # type: ignore[import-not-found]
    except ImportError as exc:
        raise SourceError(f"{INSTALL_HINT} ({exc})") from None
    return Picamera2


class PicameraGrabber:
    """A started Picamera2 with a ``main`` stream and a YUV420 ``lores`` stream for detection.

    The ISP scales the lores stream in hardware, so the detector never resizes a full frame.
    YUV420 is the lores format every Pi supports (the Pi 4 ISP cannot produce RGB there).
    """

    def __init__(
        self,
        camera_num: int,
        main_size: tuple[int, int],
        lores_size: tuple[int, int],
        fps: float | None,
        picamera2_class: Callable[..., Any] | None = None,
    ) -> None:
        factory = picamera2_class or import_picamera2()
        if lores_size[0] > main_size[0] or lores_size[1] > main_size[1]:
            raise SourceError(
                f"camera.detect_resolution {lores_size} must not exceed "
                f"camera.resolution {main_size}"
            )
        self._lores_size = lores_size
        self._camera = factory(camera_num)
        controls = {"FrameRate": float(fps)} if fps else {}
        config = self._camera.create_video_configuration(
            main={"size": tuple(main_size), "format": "YUV420"},
            lores={"size": tuple(lores_size), "format": "YUV420"},
            controls=controls,
            buffer_count=4,
        )
        self._camera.configure(config)
        self._camera.start()

    def read(self) -> np.ndarray | None:
        try:
            yuv = self._camera.capture_array("lores")
        except Exception:  # noqa: BLE001 - libcamera errors vary; the live source reconnects
            return None
        return lores_to_bgr(yuv, self._lores_size)

    def release(self) -> None:
        try:
            self._camera.stop()
        finally:
            self._camera.close()


def lores_to_bgr(yuv: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Convert a picamera2 YUV420 (I420) array, possibly padded to the row stride, to BGR.

    picamera2 returns ``(height * 3 / 2, stride)``; converting at the stride width keeps the
    U and V planes aligned, then the padding columns are cut off.
    """
    width, height = size
    if yuv.ndim != 2 or yuv.shape[0] != height * 3 // 2 or yuv.shape[1] < width:
        raise SourceError(
            f"picamera2 lores frame has shape {yuv.shape}, expected ({height * 3 // 2}, >= {width})"
        )
    bgr = cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420)
    return bgr[:, :width] if bgr.shape[1] != width else bgr

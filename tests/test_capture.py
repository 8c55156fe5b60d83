"""Frame sources: video file, image folder, HTTP stream (live, reconnecting), V4L2, picamera2."""

from __future__ import annotations

import functools
import http.server
import random
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from intentcam.capture import (
    Backoff,
    ImageFolderSource,
    LatestFrameSlot,
    LiveSource,
    VideoFileSource,
    detect_kind,
    open_source,
)
from intentcam.capture.files import _Pacer
from intentcam.capture.frame import Frame
from intentcam.capture.opencv_stream import open_url, open_v4l2, redact_url
from intentcam.capture.picamera import PicameraGrabber, import_picamera2, lores_to_bgr
from intentcam.config import CameraConfig
from intentcam.errors import SourceError
from tests.data import CAVIAR, CONCOURSE, MALL
from tests.waiting import wait_until

# --- files --------------------------------------------------------------------------------


def test_video_file_delivers_every_frame_with_increasing_timestamps() -> None:
    source = VideoFileSource(CAVIAR / "video.mpg")
    frames = []
    while (frame := source.read()) is not None:
        frames.append((frame.index, frame.timestamp, frame.image.shape))
    source.close()
    assert source.finished and source.stats.state == "finished"
    assert len(frames) == 295  # SOURCES.md: 295 decodable frames
    assert [index for index, _, _ in frames] == list(range(295))
    stamps = np.array([stamp for _, stamp, _ in frames])
    assert (np.diff(stamps) > 0).all()
    assert 11.0 < stamps[-1] - stamps[0] < 12.5  # 25 fps clip time, not decoding speed
    assert frames[0][2] == (288, 384, 3)


def test_concourse_clock_follows_the_decoded_frames() -> None:
    # The container claims 50 fps for 682 frames but 341 decode: clip time must stay ~13.6 s.
    source = VideoFileSource(CONCOURSE)
    first = source.read()
    last = first
    while (frame := source.read()) is not None:
        last = frame
    assert last.index == 340
    assert 13.0 < last.timestamp - first.timestamp < 14.0


def test_corrupt_video_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.avi"
    bad.write_bytes(b"RIFF" + bytes(range(256)) * 50)
    with pytest.raises(SourceError, match="broken.avi") as caught:
        source = VideoFileSource(bad)
        source.read()
    assert "\n" not in str(caught.value)
    with pytest.raises(SourceError, match="not found"):
        VideoFileSource(tmp_path / "missing.mp4")


def test_realtime_pace_sleeps_to_clip_time() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = _Pacer("realtime", sleep=sleep, clock=lambda: now[0])
    pacer.wait_for(0.0)
    pacer.wait_for(0.5)
    now[0] += 0.2  # processing took 0.2 s: only the rest of the frame period is slept
    pacer.wait_for(1.0)
    assert slept == pytest.approx([0.5, 0.3])
    fast: list[float] = []
    _Pacer("fast", sleep=fast.append).wait_for(10.0)
    assert fast == []


@pytest.fixture()
def image_folder(tmp_path: Path) -> Path:
    capture = cv2.VideoCapture(str(MALL))
    folder = tmp_path / "frames"
    folder.mkdir()
    for number in range(5):
        ok, image = capture.read()
        assert ok
        cv2.imwrite(str(folder / f"seq_{number:03d}.png"), image)
    (folder / "seq_002b.jpg").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("ignored")
    return folder


def test_image_folder_in_name_order_skipping_bad_files(image_folder: Path) -> None:
    source = ImageFolderSource(image_folder, fps=2.0)
    frames: list[Frame] = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert source.stats.errors == 1 and "seq_002b.jpg" in source.stats.last_error
    assert np.allclose(np.diff([f.timestamp for f in frames]), 0.5)
    reference = cv2.imread(str(image_folder / "seq_003.png"))
    assert np.array_equal(frames[3].image, reference)


def test_empty_image_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="has no images"):
        ImageFolderSource(tmp_path)


def test_source_kind_detection(tmp_path: Path, image_folder: Path) -> None:
    assert detect_kind("picamera2") == "picamera2"
    assert detect_kind("picamera2:1") == "picamera2"
    assert detect_kind("rtsp://user:pw@10.0.0.2/stream") == "url"
    assert detect_kind("http://127.0.0.1:8080/video.mjpg") == "url"
    assert detect_kind("/dev/video0") == "v4l2"
    assert detect_kind("2") == "v4l2"
    assert detect_kind(str(image_folder)) == "images"
    assert detect_kind(str(CONCOURSE)) == "file"
    with pytest.raises(SourceError, match="camera.source"):
        detect_kind(str(tmp_path / "nothing.mp4"))


def test_url_passwords_are_redacted() -> None:
    assert (
        redact_url("rtsp://admin:s3cret@cam.local:554/h264")
        == "rtsp://admin:***@cam.local:554/h264"
    )
    assert redact_url("http://cam.local/video") == "http://cam.local/video"


# --- live machinery -----------------------------------------------------------------------


def test_latest_frame_slot_keeps_only_the_newest_and_counts_drops() -> None:
    slot = LatestFrameSlot()
    image = np.zeros((2, 2, 3), np.uint8)
    for index in range(3):
        slot.put(Frame(index, float(index), image))
    taken = slot.take(timeout=0.1)
    assert taken is not None and taken.index == 2
    assert slot.dropped == 2
    assert slot.take(timeout=0.05) is None  # nothing new: no stale frame handed out twice


def test_backoff_grows_to_its_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(initial=0.5, maximum=4.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(8)]
    assert all(0.25 <= d <= 4.0 for d in delays)
    assert delays[-1] >= 2.0 and delays[0] <= 0.5
    backoff.reset()
    assert backoff.next_delay() <= 0.5


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output readable
        return None


class ClipServer:
    """A real HTTP server on a free loopback port serving a video file, stoppable and restartable."""

    def __init__(self, folder: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.folder = folder
        self._server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> None:
        handler = functools.partial(_QuietHandler, directory=str(self.folder))
        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture()
def clip_server(tmp_path: Path) -> Iterator[ClipServer]:
    shutil.copy(CAVIAR / "video.mpg", tmp_path / "clip.mpg")
    server = ClipServer(tmp_path)
    yield server
    try:
        server.stop()
    except AssertionError:
        pass


def test_http_stream_drops_stale_frames_and_reconnects(clip_server: ClipServer) -> None:
    url = f"http://127.0.0.1:{clip_server.port}/clip.mpg"
    source = LiveSource(url, lambda: open_url(url, timeout_s=2), Backoff(initial=0.05, maximum=0.2))
    try:
        # The server is not up yet: the source keeps retrying instead of failing.
        assert wait_until(lambda: source.stats.state == "reconnecting")
        assert source.read(timeout=0.2) is None
        clip_server.start()
        first = source.read(timeout=20)
        assert first is not None and first.image.shape == (288, 384, 3)
        time.sleep(0.5)  # a slow consumer: the capture thread keeps overwriting the slot
        second = source.read(timeout=5)
        assert second is not None and second.index > first.index + 1
        assert source.stats.dropped > 0
        assert second.timestamp > first.timestamp
        # The 295-frame clip ends; the stream is reopened and frames flow again.
        assert wait_until(lambda: source.stats.reconnects >= 1)
        assert wait_until(lambda: source.stats.state == "streaming")
        later = source.read(timeout=20)
        assert later is not None and later.index > second.index
    finally:
        source.close()
    assert source.stats.state == "closed"
    assert source.read(timeout=0.1) is None


def test_missing_v4l2_device_fails_to_open_and_the_live_source_retries() -> None:
    with pytest.raises(SourceError, match="/dev/video97"):
        open_v4l2("/dev/video97", (640, 480), 10)
    source = open_source(CameraConfig(source="/dev/video97", reconnect_max_s=0.1))
    try:
        assert source.live
        assert wait_until(lambda: source.stats.state == "reconnecting", timeout=5)
        assert "video97" in source.stats.last_error
        assert source.read(timeout=0.2) is None and not source.finished
    finally:
        source.close()


# --- picamera2 adapter (no Raspberry Pi camera here) --------------------------------------


class StandInPicamera2:
    """Records what the adapter asks of Picamera2 and serves padded I420 frames of a real image."""

    instances: list[StandInPicamera2] = []

    def __init__(self, camera_num: int) -> None:
        self.camera_num = camera_num
        self.calls: list[str] = []
        self.config = None
        StandInPicamera2.instances.append(self)

    def create_video_configuration(self, **kwargs):
        self.calls.append("create_video_configuration")
        return kwargs

    def configure(self, config) -> None:
        self.calls.append("configure")
        self.config = config

    def start(self) -> None:
        self.calls.append("start")

    def capture_array(self, stream: str) -> np.ndarray:
        assert stream == "lores"
        width, height = self.config["lores"]["size"]
        capture = cv2.VideoCapture(str(MALL))
        _, image = capture.read()
        image = cv2.resize(image, (width, height))
        i420 = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)
        stride = width + 64  # libcamera pads rows to its stride
        padded = np.zeros((i420.shape[0], stride), np.uint8)
        y_rows = height
        padded[:y_rows, :width] = i420[:y_rows]
        # U and V planes: rows of width/2 packed two per stride row, as libcamera lays them out.
        chroma = i420[y_rows:].reshape(-1, width // 2)
        chroma_padded = np.zeros((chroma.shape[0], stride // 2), np.uint8)
        chroma_padded[:, : width // 2] = chroma
        padded[y_rows:] = chroma_padded.reshape(-1, stride)
        self.expected = image
        return padded

    def stop(self) -> None:
        self.calls.append("stop")

    def close(self) -> None:
        self.calls.append("close")


def test_picamera2_adapter_configures_a_lores_stream_and_converts_it() -> None:
    grabber = PicameraGrabber(1, (1280, 720), (640, 360), 15.0, picamera2_class=StandInPicamera2)
    camera = StandInPicamera2.instances[-1]
    assert camera.camera_num == 1
    assert camera.config["main"] == {"size": (1280, 720), "format": "YUV420"}
    assert camera.config["lores"] == {"size": (640, 360), "format": "YUV420"}
    assert camera.config["controls"] == {"FrameRate": 15.0}
    assert camera.calls == ["create_video_configuration", "configure", "start"]
    image = grabber.read()
    assert image is not None and image.shape == (360, 640, 3)
    # YUV 4:2:0 round trip loses a little colour; the picture must be the same.
    assert np.abs(image.astype(int) - camera.expected.astype(int)).mean() < 4
    grabber.release()
    assert camera.calls[-2:] == ["stop", "close"]


def test_lores_frame_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(SourceError, match="lores frame has shape"):
        lores_to_bgr(np.zeros((100, 100), np.uint8), (640, 360))


def test_picamera2_absent_here_gives_an_install_hint() -> None:
    with pytest.raises(SourceError, match="python3-picamera2"):
        import_picamera2()
    with pytest.raises(SourceError, match="picamera2"):
        open_source(CameraConfig(source="picamera2"))

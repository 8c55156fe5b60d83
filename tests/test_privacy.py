"""Privacy rule 1: nothing the daemon writes or publishes contains image data."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.brokers import Broker, subscribe
from tests.cli import intentcam_argv
from tests.data import CONCOURSE
from tests.waiting import wait_until

ENV = {k: v for k, v in os.environ.items() if not k.startswith("INTENTCAM_")}
#: Magic numbers of image formats, raw and as the start of a base64 string.
SIGNATURES = [
    b"\xff\xd8\xff",
    b"\x89PNG\r\n",
    b"GIF8",
    b"RIFF",
    b"II*\x00",
    b"MM\x00*",
    b"/9j/",
    b"iVBORw0KGgo",
    b"R0lGOD",
    b"UklGR",
]
BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]{200,}={0,2}")


def image_like(blob: bytes, where: str) -> list[str]:
    """Signatures of image formats, and long base64 runs that decode to image-sized data."""
    problems = [f"{where}: contains {sig!r}" for sig in SIGNATURES if sig in blob]
    for run in BASE64_RUN.findall(blob):
        raw = base64.b64decode(run + b"=" * (-len(run) % 4))
        try:
            raw = zlib.decompress(raw)
        except zlib.error:
            pass
        # A 32x18 uint32 heatmap is 2,304 bytes; the smallest useful face crop (48x48 gray) is
        # 2,304 too, so anything beyond a heatmap's size is refused.
        if len(raw) > 32 * 18 * 4 or any(sig in raw for sig in SIGNATURES):
            problems.append(f"{where}: base64 run decoding to {len(raw)} bytes")
    return problems


def keypoint_like(message: object, where: str) -> list[str]:
    """Pose or face landmark sets in a decoded JSON message: keys that name them, or arrays the
    shape of MoveNet's 17 keypoints (17 points of 2 or 3 numbers). A flat list of 34 or 51
    numbers is not flagged: a frame's detection scores or track ids can be that long."""
    problems: list[str] = []

    def numbers(items: list[object]) -> bool:
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items)

    def walk(value: object, path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if re.search(r"keypoint|landmark|wrist|shoulder|elbow|ankle", str(key), re.I):
                    problems.append(f"{where}: key {path}/{key}")
                walk(item, f"{path}/{key}")
        elif isinstance(value, list):
            points = len(value) == 17 and all(
                isinstance(v, list) and len(v) in (2, 3) and numbers(v) for v in value
            )
            if points:
                problems.append(f"{where}: keypoint-shaped array at {path}")
            for index, item in enumerate(value):
                walk(item, f"{path}/{index}")

    walk(message, "")
    return problems


@pytest.mark.broker
def test_nothing_written_or_published_contains_image_data(tmp_path: Path, model_dir: Path) -> None:
    folder = tmp_path / "broker"
    folder.mkdir()
    broker = Broker(folder).start()
    payloads: list[bytes] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, message: payloads.append(message.payload)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    subscribe(client, ["#"])
    state = tmp_path / "state"
    config = tmp_path / "c.toml"
    config.write_text(
        f"""
[analytics]
window_s = 2
heatmap_window_s = 4
[privacy]
k_min = 1
[telemetry]
events = true
event_tokens = true
health_interval_s = 1
[[zones]]
id = "left"
kind = "display"
points = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]
[[zones]]
id = "middle"
kind = "shelf"
points = [[0.35, 0.3], [0.65, 0.3], [0.65, 0.7], [0.35, 0.7]]
[[alerts.rules]]
id = "help"
kind = "shelf_help"
linger_s = 0
min_reaches = 0
[mqtt]
host = "127.0.0.1"
port = {broker.port}
[paths]
model_dir = "{model_dir}"
state_dir = "{state}"
""",
        encoding="utf-8",
    )
    sink = tmp_path / "sink.jsonl"
    try:
        result = subprocess.run(
            intentcam_argv(
                "run",
                "--config",
                str(config),
                "--source",
                str(CONCOURSE),
                "--frames",
                "--sink",
                f"jsonl:{sink}",
            ),
            env=ENV,
            capture_output=True,
            text=True,
            timeout=300,
        )
        # The daemon's last message is its "stopped" status: everything else came before it.
        assert wait_until(lambda: any(b'"stopped"' in payload for payload in payloads), 30)
    finally:
        client.loop_stop()
        client.disconnect()
        broker.stop()
    assert result.returncode == 0, result.stderr
    assert len(payloads) > 10 and sink.stat().st_size > 10_000
    problems = []
    messages = []
    for index, payload in enumerate(payloads):
        problems += image_like(payload, f"published message {index}")
        messages.append(json.loads(payload))  # every message is JSON, nothing binary
        problems += keypoint_like(messages[-1], f"published message {index}")
    for line in sink.read_text(encoding="utf-8").splitlines():
        problems += keypoint_like(json.loads(line), "sink")
    for path in [sink, *state.rglob("*")]:
        if path.is_file():
            problems += image_like(path.read_bytes(), str(path.relative_to(tmp_path)))
    problems += image_like(result.stdout.encode() + result.stderr.encode(), "console output")
    assert problems == []
    # The shelf pipeline ran (MoveNet on the people at the shelf zone) and alerted.
    assert any("pose" in m["stages"] for m in messages
               if m.get("type") == "health"), "no pose stage in any health message"  # fmt: skip
    assert any(m.get("type") == "alert" for m in messages)


def test_the_scanner_finds_image_data() -> None:
    """The check above can fail: a JPEG, raw or base64, is found."""
    import cv2
    import numpy as np

    ok, jpeg = cv2.imencode(".jpg", np.zeros((48, 48), np.uint8))
    assert ok
    message = json.dumps({"face": base64.b64encode(jpeg.tobytes()).decode()}).encode()
    assert image_like(message, "m")
    assert image_like(b"x" + jpeg.tobytes(), "raw")
    assert image_like(json.dumps({"grid": [1] * 10}).encode(), "clean") == []


def test_the_scanner_finds_keypoints() -> None:
    """...and so is a pose, by name or by shape."""
    pose = np.random.default_rng(0).random((17, 3)).round(3).tolist()
    assert keypoint_like({"zones": {"shelf": {"p": pose}}}, "m")
    assert keypoint_like({"x": [[x, y] for x, y, _ in pose]}, "m")
    assert keypoint_like({"left_wrist": 1}, "m")
    assert keypoint_like({"zones": {"shelf": {"reach": 2, "inspect": 1}}, "v": [0] * 16}, "m") == []


# --- intentcam preview: the one command that writes a picture --------------------------------

PREVIEW_GEOMETRY = """
[[lines]]
id = "shop_exit"
points = [[0.25, 0.30], [0.25, 0.80]]
[[zones]]
id = "shop_front"
points = [[0.0, 0.3], [0.25, 0.3], [0.25, 0.8], [0.0, 0.8]]
"""


def _default_detector(model_dir: Path):  # the daemon's own detector, as configured by default
    from intentcam.config import load_config
    from intentcam.detect import build_detector

    return build_detector(load_config(None, overrides={"paths": {"model_dir": str(model_dir)}}))


@pytest.mark.slow
def test_preview_draws_the_geometry_and_no_person_survives_on_the_plate(
    tmp_path: Path, model_dir: Path
) -> None:
    import cv2

    from tests.cli import run_cli
    from tests.data import CAVIAR

    config = tmp_path / "camera.toml"
    config.write_text(f'[paths]\nstate_dir = "{tmp_path / "state"}"\nmodel_dir = "{model_dir}"\n'
                      f'[camera]\nsource = "{CAVIAR / "video.mpg"}"\n' + PREVIEW_GEOMETRY)  # fmt: skip
    out = tmp_path / "view.png"
    result = run_cli("preview", "--config", str(config), "--seconds", "10", "--out", str(out),
                     "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["trails"] >= 1 and report["plate_samples"] >= 20
    picture = cv2.imread(str(out))
    assert picture is not None
    height, width = picture.shape[:2]
    # The line is drawn in amber at x = 0.25 between y = 0.3 and 0.8.
    column = picture[int(0.4 * height) : int(0.7 * height), int(0.25 * width) - 1]
    assert (np.abs(column.astype(int) - [0, 215, 255]).sum(axis=1) < 60).mean() > 0.8
    detector = _default_detector(model_dir)
    left = detector.detect(picture, min_score=detector.operating_point.low_score)
    assert len(left) == 0, f"a person is recognisable in the preview: {left.boxes.tolist()}"
    assert not (tmp_path / "state" / "spool.sqlite").exists()  # preview records nothing


def test_blurring_leaves_nobody_the_detector_can_find(model_dir: Path) -> None:
    """People who stood still the whole window stay in the median: they must be blurred."""
    import cv2

    from intentcam.preview import background_plate, blur_people
    from tests.data import DATA

    still = cv2.imread(str(DATA / "kite_and_cold.jpg"))
    detector = _default_detector(model_dir)
    low = detector.operating_point.low_score
    assert len(detector.detect(still, min_score=low)) >= 3
    plate = background_plate([still] * 5)
    assert blur_people(plate, detector, low) >= 3
    assert len(detector.detect(plate, min_score=low)) == 0


def test_pictures_are_never_made_by_the_service_or_the_daemon(tmp_path: Path) -> None:
    """Only preview and calibrate encode images of the camera, only by hand: as a systemd service
    they refuse (the plate of ``preview --plate`` too), and the daemon never even imports them, nor
    the gateway-side report (which draws plates and charts)."""
    from intentcam.errors import UserError
    from intentcam.preview import refuse_as_a_service
    from tests.cli import run_cli

    refuse_as_a_service({})
    with pytest.raises(UserError, match="privacy rule 1"):
        refuse_as_a_service({"NOTIFY_SOCKET": "/run/systemd/notify"})
    out, plate = tmp_path / "view.png", tmp_path / "plate.png"
    done = run_cli("preview", "--source", str(CONCOURSE), "--seconds", "2", "--out", str(out),
                   "--plate", str(plate), env={"INVOCATION_ID": "0123abcd"})  # fmt: skip
    assert done.returncode == 1 and "privacy rule 1" in done.stderr and not out.exists()
    assert not plate.exists()
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, intentcam.daemon, intentcam.cli.run_cmd; "
         "print(sorted(m for m in sys.modules if m.startswith(('intentcam.preview', "
         "'intentcam.calibrate', 'intentcam.report'))))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert imported.stdout.strip() == "[]"

"""Telemetry volume per camera: bytes per minute at the default intervals.

Usage (from the repository root, after `make setup`):

    .venv/bin/python hw_bench/telemetry_bytes.py [--minutes 10] [--clip PATH] [--json OUT]

The clip's detections are computed once and looped (with clip time running on) through the real
tracking, analytics and telemetry path (envelope, compact JSON, the spool) for `--minutes` of clip
time with the default windows (counts and sessions every 60 s, heatmap every 300 s); one health
message is built from the run's real measurements and counted at its default interval (30 s).
Payload bytes are exact; wire bytes add the MQTT PUBLISH header, the topic and the PUBACK.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from intentcam.benchmark import scratch_state, write_report
from intentcam.capture import VideoFileSource
from intentcam.config import load_config
from intentcam.detect import build_detector
from intentcam.errors import UserError
from intentcam.telemetry.health import HealthMonitor
from intentcam.telemetry.messages import encode
from intentcam.telemetry.service import Telemetry
from intentcam.track.bytetrack import TrackerSettings
from intentcam.view import CameraView

ROOT = Path(__file__).resolve().parents[1]
MALL = ROOT.parent / "shared" / "data" / "counting" / "mall_dataset" / "mall_frames_0001-0400.mp4"
MQTT_OVERHEAD = 2 + 2 + 2 + 4  # fixed header, topic length, packet id, PUBACK


class Capture:
    def __init__(self) -> None:
        self.messages: list[dict] = []

    def write(self, record: dict, line: str | None = None) -> None:
        if "seq" in record:
            self.messages.append(record)

    def close(self) -> None:
        return None


def measure(clip: Path, minutes: float, config: Path | None) -> dict:
    device = {"id": "cam-entrance-01", "site": "store-0042"}
    with scratch_state(load_config(config), device=device) as settings:
        detector = build_detector(settings)
        source = VideoFileSource(clip)
        frames = []
        while (frame := source.read()) is not None:
            frames.append(frame)
        period = (frames[-1].timestamp - frames[0].timestamp) / max(len(frames) - 1, 1)
        point = detector.operating_point
        low_score = TrackerSettings.from_config(settings.tracker, point).low_score
        detections = [
            detector.detect(f.image, min_score=low_score)
            for f in tqdm(frames, desc="detect", leave=False, disable=None)
        ]
        height, width = frames[0].image.shape[:2]
        view = CameraView.from_settings(settings, width / height, point)
        capture = Capture()
        telemetry = Telemetry(settings, capture)
        total = int(minutes * 60 / period)
        for index in tqdm(range(total), desc="analytics", leave=False, disable=None):
            for record in view.process(detections[index % len(frames)], index * period):
                telemetry.write(record)
        health = HealthMonitor().body(
            total,
            spool=telemetry.spool.stats(),
            source=source,
            broker=True,
            models=[detector.describe()],
        )
        telemetry.publish_health(health)
        telemetry.spool.close()
    per_type: dict[str, dict[str, float]] = {}
    topic_length = len(f"{settings.mqtt.topic_root}/store-0042/cam-entrance-01/") + 8
    for message in capture.messages:
        size = len(encode(message))
        entry = per_type.setdefault(message["type"], {"messages": 0, "payload_bytes": 0})
        entry["messages"] += 1
        entry["payload_bytes"] += size
    clip_minutes = total * period / 60
    result: dict = {"clip": str(clip), "clip_minutes": round(clip_minutes, 2), "types": {}}
    for kind, entry in per_type.items():
        if kind == "health":  # one real message, sent every health_interval_s
            per_minute = 60 / settings.telemetry.health_interval_s
        else:
            per_minute = entry["messages"] / clip_minutes
        mean = entry["payload_bytes"] / entry["messages"]
        result["types"][kind] = {
            "messages_per_min": round(per_minute, 2),
            "mean_payload_bytes": round(mean),
            "payload_bytes_per_min": round(per_minute * mean),
            "wire_bytes_per_min": round(per_minute * (mean + topic_length + MQTT_OVERHEAD)),
        }
    result["payload_bytes_per_min"] = sum(
        t["payload_bytes_per_min"] for t in result["types"].values()
    )
    result["wire_bytes_per_min"] = sum(t["wire_bytes_per_min"] for t in result["types"].values())
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="clip time to run (default 10)")
    parser.add_argument("--clip", type=Path, default=MALL, help="video (default: the Mall clip)")
    parser.add_argument("--config", type=Path, help="intentcam config (lines, zones, model dir)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    args = parser.parse_args()
    if not args.clip.is_file():
        print(f"error: {args.clip}: not found", file=sys.stderr)
        return 1
    try:
        result = measure(args.clip, args.minutes, args.config)
    except UserError as exc:
        print(f"telemetry_bytes: {exc}", file=sys.stderr)
        return 2
    print(f"{result['clip_minutes']} min of clip time\n")
    print(
        "| message | per min | mean payload B | payload B/min | wire B/min |\n|---|---|---|---|---|"
    )
    for kind, row in result["types"].items():
        print(
            f"| {kind} | {row['messages_per_min']} | {row['mean_payload_bytes']} | "
            f"{row['payload_bytes_per_min']} | {row['wire_bytes_per_min']} |"
        )
    print(f"| total | | | {result['payload_bytes_per_min']} | {result['wire_bytes_per_min']} |")
    write_report(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

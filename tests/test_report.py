"""The daily store report: its numbers recomputed from the messages, several cameras merged, the
page in a real headless Chromium, and no recognisable person in anything it writes."""

from __future__ import annotations

import base64
import json
import re
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from intentcam.report.day import Names, build_day
from intentcam.report.page import FloorPlan
from intentcam.telemetry.messages import encode_heatmap, envelope, validation_errors
from tests.browser import browser
from tests.cli import run_cli
from tests.data import CONCOURSE

ROOT = Path(__file__).resolve().parents[1]
DAY = date(2026, 11, 20)


def at(hour: int, minute: int = 0) -> str:
    return (
        datetime(2026, 11, 20, hour, minute, tzinfo=timezone.utc).isoformat().replace("+00:00", "Z")
    )


def counts(device: str, seq: int, hour: int, minute: int, door: tuple[int, int], occupancy: int,
           entries: int) -> dict[str, Any]:  # fmt: skip
    today = {"since": at(4), "lines": {"door": {"in": 0, "out": 0}}, "zones": {"entries": {}}}
    zone = {"kind": "display", "entries": entries, "occupancy": {"now": 0, "max": 1, "mean": 0.5},
            "dwell": {"count": 0, "suppressed": False}}  # fmt: skip
    body = {"window": {"start": at(hour, minute), "end": at(hour, minute + 1)}, "frames": 600,
            "lines": {"door": {"in": door[0], "out": door[1]}},
            "people": {"now": 1, "max": 2, "mean": 1.0}, "store_occupancy": occupancy,
            "today": today, "zones": {"shelf": zone}}  # fmt: skip
    return envelope("counts", device, "store", body, seq, boot_id="a" * 32)


def sessions(device: str, seq: int, hour: int, stays: list[float]) -> dict[str, Any]:
    listed = [
        {"token": f"{i:032x}", "start": at(hour), "end": at(hour, 1), "reason": "left",
         "dwell_s": stay + 5, "path_length": 1.0, "zones": {"shelf": {"visits": 1, "dwell_s": stay}},
         "revisits": 0, "engagement": 0.5, "approach": 0.2, "avoid": 0.1, "approach_index": 0.33,
         "hesitation": 0, "hesitation_per_min": 1.0, "crossings": [],
         "sentiment": {"schema": "intentcam.sentiment.v1", "expression": False, "v": [0] * 16}}
        for i, stay in enumerate(stays)
    ]  # fmt: skip
    body = {"window": {"start": at(hour), "end": at(hour, 1)}, "sessions": listed,
            "short_sessions": 0, "min_session_s": 2.0, "plane": "image_heights"}  # fmt: skip
    return envelope("sessions", device, "store", body, seq, boot_id="a" * 32)


def heatmap(device: str, seq: int, cells: np.ndarray, extent: list[float]) -> dict[str, Any]:
    rows, columns = cells.shape
    body = {"window": {"start": at(9), "end": at(9, 5)}, "grid": [columns, rows], "space": "floor_m",
            "extent_m": extent, "unit": "track_seconds", "k_min": 3, "suppressed_cells": 0,
            **encode_heatmap(cells)}  # fmt: skip
    return envelope("heatmap", device, "store", body, seq, boot_id="a" * 32)


@pytest.fixture()
def two_doors() -> list[dict[str, Any]]:
    """Two cameras, one door each, a morning and an afternoon; a duplicate delivery; a window
    of the day before."""
    messages = [
        counts("cam-north", 1, 9, 0, (5, 1), 4, 2),
        counts("cam-north", 2, 9, 20, (3, 2), 5, 1),
        counts("cam-south", 1, 9, 5, (2, 0), 2, 0),
        counts("cam-south", 2, 14, 0, (1, 4), 0, 3),
        counts("cam-north", 3, 14, 10, (0, 3), 2, 0),
        sessions("cam-north", 4, 9, [10.0, 30.0, 90.0, 120.0]),
        heatmap("cam-north", 5, np.full((2, 4), 2.0), [4.0, 2.0]),
        heatmap("cam-south", 3, np.full((2, 4), 1.0), [4.0, 2.0]),
    ]
    messages.append(dict(messages[0]))  # QoS 1 delivered it twice
    yesterday = counts("cam-north", 10, 9, 0, (50, 50), 0, 0)
    yesterday["window"] = {"start": "2026-11-19T09:00:00.000Z", "end": "2026-11-19T09:01:00.000Z"}
    messages.append(yesterday)
    assert all(validation_errors(m) == [] for m in messages)
    return messages


def test_the_day_adds_up_what_the_cameras_counted(two_doors: list[dict[str, Any]]) -> None:
    names = Names(lines={"cam-north/door": "entrance", "cam-south/door": "entrance"})
    day = build_day(two_doors, DAY, "UTC", site="store", names=names, long_visit_s=60, k_min=3)
    # Recomputed from the messages of that day, each once.
    of_day = {(m["device"], m["seq"]): m for m in two_doors
              if m["type"] == "counts" and m["window"]["start"].startswith("2026-11-20")}  # fmt: skip
    assert day.totals == {"entrance": {
        "in": sum(m["lines"]["door"]["in"] for m in of_day.values()),
        "out": sum(m["lines"]["door"]["out"] for m in of_day.values()),
    }} == {"entrance": {"in": 11, "out": 10}}  # fmt: skip
    by_hour = {row[0]: row for row in day.footfall.rows}
    assert by_hour["09:00"][1:] == [10, 3, 10, 3] and by_hour["14:00"][1:] == [1, 7, 1, 7]
    assert day.peak_hour == 9
    # Occupancy: both cameras' latest values summed, per quarter hour.
    slots = {row[0]: row[1:] for row in day.occupancy.rows}
    assert slots["09:00"] == [5.0, 6] and slots["09:15"] == [7.0, 7]  # 4, 4+2; then 5+2
    assert slots["14:00"] == [3.5, 5]  # 5+0, then 2+0
    zones = {row[0]: row for row in day.zones.rows}
    shelf_north = zones["cam-north/shelf"]
    assert shelf_north[1] == 3 and shelf_north[2] == 4  # visits (entries), visitors (sessions)
    assert shelf_north[3] == float(np.percentile([10, 30, 90, 120], 50))
    assert shelf_north[5] == 0.5  # 2 of 4 stayed over 60 s
    assert zones["cam-south/shelf"][3:] == ["", "", ""]  # no visitor sessions: suppressed
    assert {h.device: float(h.seconds.sum()) for h in day.heat} == {"cam-north": 16.0,
                                                                    "cam-south": 8.0}  # fmt: skip
    north = next(h for h in day.heat if h.device == "cam-north")
    assert north.per_square_metre is not None and float(north.per_square_metre[0, 0]) == 2.0


def test_the_shelves_table_adds_up_interactions_and_judges_engagement_over_k() -> None:
    def shelf_window(seq: int, minute: int, interactions: dict[str, Any]) -> dict[str, Any]:
        message = counts("cam-aisle", seq, 10, minute, (0, 0), 0, 1)
        zone = message["zones"]["shelf"]
        zone["kind"] = "shelf"
        zone["interactions"] = interactions
        return message

    messages = [
        shelf_window(1, 0, {"reach": 4, "inspect": 2, "put_back": 1, "visits": 3,
                            "engaged_visits": 2, "engagement": 0.667}),
        shelf_window(2, 1, {"reach": 1, "inspect": 0, "put_back": 0, "visits": 1,
                            "engagement_suppressed": True}),
        shelf_window(3, 2, {"reach": 3, "inspect": 1, "put_back": 0, "visits": 5,
                            "engaged_visits": 1, "engagement": 0.2}),
    ]  # fmt: skip
    assert all(validation_errors(m) == [] for m in messages)
    day = build_day(
        messages, DAY, "UTC", site="store", names=Names(zones={"cam-aisle/shelf": "coffee"})
    )
    assert day.shelves.rows == [["coffee", 9, 8, 3, 1, round(3 / 8, 3)]]
    assert day.shelves in day.tables()


def test_the_alerts_table_counts_each_alert_once_in_its_local_hour(tmp_path: Path) -> None:
    def alert(
        device: str, seq: int, hour: int, minute: int, zone: str, rule: str
    ) -> dict[str, Any]:
        body = {"alert_id": f"{seq:08x}", "rule": rule, "kind": "shelf_help", "zone": zone,
                "reason": f"a shopper has been at {zone} for 12 s and reached 3 times",
                "at": at(hour, minute), "lingered_s": 12.0, "reaches": 3}  # fmt: skip
        return envelope("alert", device, "store", body, seq, boot_id="a" * 32)

    messages = [
        counts("cam-aisle", 1, 10, 0, (1, 0), 1, 1),
        alert("cam-aisle", 1, 10, 5, "coffee", "help"),
        alert("cam-aisle", 2, 10, 40, "coffee", "help"),
        alert("cam-aisle", 3, 15, 2, "tea", "help"),
        alert("cam-tills", 1, 15, 30, "tills", "queue"),
    ]
    messages.append(dict(messages[1]))  # QoS 1 delivered it twice
    messages.append(  # an alert of the day before
        {**alert("cam-aisle", 9, 10, 0, "coffee", "help"), "at": at(10)[:8] + "19T10:00:00.000Z"}
    )
    # An installer's test alert (cmd/test_alert): nobody needed help.
    messages.append({**alert("cam-aisle", 10, 11, 0, "coffee", "help"), "test": True})
    assert all(validation_errors(m) == [] for m in messages)
    # In a recording, as `intentcam run --sink jsonl:` and `intentcam tail --json` write them.
    recording = tmp_path / "day.jsonl"
    recording.write_text("\n".join(json.dumps(m) for m in messages[:3])
                         + "\n" + "\n".join(json.dumps({"topic": "t", "message": m})
                                             for m in messages[3:]) + "\n")  # fmt: skip
    from intentcam.report.source import read_jsonl

    names = Names(zones={"cam-aisle/coffee": "coffee bar"})
    day = build_day(read_jsonl(recording), DAY, "Europe/Berlin", site="store", names=names)
    assert day.alerts.columns == ["hour", "cam-aisle/tea help", "cam-tills/tills queue",
                                  "coffee bar help", "alerts"]  # fmt: skip
    hours = {row[0]: row[1:] for row in day.alerts.rows if row[-1]}
    assert hours == {"11:00": [0, 0, 2, 2], "16:00": [1, 1, 0, 2]}  # UTC+1 in November
    assert day.alert_count == 4 and day.alerts in day.tables()
    from intentcam.report.page import write_report

    summary = write_report(day, tmp_path / "report")
    page = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert 'id="alerts"' in page and "staff alerts" in page
    assert summary["tables"]["alerts"]["rows"] == day.alerts.rows
    csv = (tmp_path / "report" / "alerts.csv").read_text().splitlines()
    assert csv[0] == "hour,cam-aisle/tea help,cam-tills/tills queue,coffee bar help,alerts"
    assert csv[12] == "11:00,0,0,2,2"


def test_names_files_are_checked(tmp_path: Path) -> None:
    from intentcam.errors import UserError

    good = tmp_path / "names.toml"
    good.write_text('[lines]\n"cam1/door" = "entrance"\n', encoding="utf-8")
    assert Names.load(good).line("cam1", "door") == "entrance"
    bad = tmp_path / "bad.toml"
    bad.write_text('[lines]\ndoor = "entrance"\n', encoding="utf-8")
    with pytest.raises(UserError, match='must map "device/id"'):
        Names.load(bad)


def test_the_floor_plan_stitches_cameras_in_seconds_per_square_metre(
    two_doors: list[dict[str, Any]], tmp_path: Path
) -> None:
    from intentcam.report.page import floor_heat_png

    plan = tmp_path / "plan.png"
    cv2.imwrite(str(plan), np.full((100, 200, 3), 255, np.uint8))
    day = build_day(two_doors, DAY, "UTC", site="store")
    png, density = floor_heat_png(
        day.heat, FloorPlan(plan, pixels_per_metre=10, origin_px=(20, 30))
    )
    assert png.startswith(b"\x89PNG")
    # Both 4 m x 2 m grids land on the same 40 x 20 pixels from (20, 30): 2 + 1 s per m².
    assert density[30:50, 20:60].min() == density[30:50, 20:60].max() == 3.0
    assert density.sum() == 3.0 * 40 * 20


def images_in(folder: Path) -> list[tuple[str, np.ndarray]]:
    """Every raster image the report wrote: PNG files and PNG data URIs inside its HTML."""
    found = [(p.name, cv2.imread(str(p))) for p in folder.glob("*.png")]
    page = (folder / "index.html").read_text(encoding="utf-8")
    for number, data in enumerate(re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)):
        raw = np.frombuffer(base64.b64decode(data), np.uint8)
        found.append((f"index.html image {number}", cv2.imdecode(raw, cv2.IMREAD_COLOR)))
    return found


@pytest.mark.slow
def test_the_demo_report_in_a_real_browser(tmp_path: Path, model_dir: Path) -> None:
    config = tmp_path / "demo.toml"
    config.write_text((ROOT / "config" / "demo.toml").read_text(encoding="utf-8")
                      + f'\n[paths]\nmodel_dir = "{model_dir}"\n', encoding="utf-8")  # fmt: skip
    records, plate, out = tmp_path / "records.jsonl", tmp_path / "plate.png", tmp_path / "report"
    common = ("--config", str(config), "--source", str(CONCOURSE))
    ran = run_cli("run", *common, "--sink", f"jsonl:{records}", timeout=600)
    assert ran.returncode == 0, ran.stderr
    shown = run_cli("preview", *common, "--seconds", "10", "--out", str(tmp_path / "view.png"),
                    "--plate", str(plate))  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    made = run_cli("report", "--from", str(records), "--out", str(out), "--plate",
                   f"demo-cam={plate}", "--json")  # fmt: skip
    assert made.returncode == 0, made.stderr
    summary = json.loads(made.stdout)

    # The report's totals are the sum of the day's counts messages.
    messages = [json.loads(line) for line in records.read_text().splitlines()]
    windows = [m for m in messages if m.get("type") == "counts"]
    assert summary["windows"] == len(windows) > 0
    line = "demo-cam/entrance"
    assert summary["totals"][line] == {
        d: sum(m["lines"]["entrance"][d] for m in windows) for d in ("in", "out")
    }
    assert sum(summary["totals"][line].values()) > 0
    visits = {row[0]: row[1] for row in summary["tables"]["zones"]["rows"]}
    for zone in ("meeting_point", "east_aisle"):
        assert visits[f"demo-cam/{zone}"] == sum(m["zones"][zone]["entries"] for m in windows)
    for table in summary["tables"]:
        assert (out / f"{table}.csv").read_text().splitlines()[0].split(",")[0]

    # The page in Chromium: loads with no console error, every chart visible, a screenshot.
    driver = browser(1200, 1000)
    try:
        driver.get((out / "index.html").as_uri())
        charts = driver.find_elements("css selector", "img.chart")
        assert len(charts) >= 6  # footfall, occupancy, zones, intent, sentiment, heatmap
        for chart in charts:
            driver.execute_script("arguments[0].scrollIntoView()", chart)
            assert chart.is_displayed() and chart.size["width"] > 200 and chart.size["height"] > 100
            assert driver.execute_script("return arguments[0].naturalWidth", chart) > 0
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == []
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1200, height + 100)
        driver.save_screenshot(str(tmp_path / "report.png"))
    finally:
        driver.quit()
    assert (tmp_path / "report.png").stat().st_size > 50_000

    # No recognisable person in any picture of the report.
    from intentcam.config import load_config
    from intentcam.detect import build_detector

    detector = build_detector(load_config(config))
    low = detector.operating_point.low_score
    pictures = images_in(out) + [("plate", cv2.imread(str(plate)))]
    assert len(pictures) >= 2
    for name, picture in pictures:
        assert picture is not None, name
        found = detector.detect(picture, min_score=low)
        assert len(found) == 0, f"{name}: a person is recognisable: {found.boxes.tolist()}"


@pytest.mark.broker
def test_a_report_collected_from_the_broker(
    two_doors: list[dict[str, Any]], tmp_path: Path
) -> None:
    import subprocess

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from tests.brokers import Broker
    from tests.cli import intentcam_argv
    from tests.test_telemetry import ENV, EVERY_CAMERA
    from tests.waiting import wait_until

    folder = tmp_path / "broker"
    folder.mkdir()
    broker = Broker(folder).start()
    try:
        collector = subprocess.Popen(
            intentcam_argv("report", "--from", f"mqtt://127.0.0.1:{broker.port}", "--collect", "8",
                           "--date", DAY.isoformat(), "--tz", "UTC", "--out", str(tmp_path / "r"),
                           "--json"),
            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        # Counts are not retained: publishing before the collector has subscribed loses them.
        assert wait_until(lambda: broker.subscriptions(EVERY_CAMERA) > 0, timeout=60)
        publisher = mqtt.Client(CallbackAPIVersion.VERSION2)
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        for message in two_doors:
            topic = f"intentcam/v1/{message['site']}/{message['device']}/{message['type']}"
            publisher.publish(topic, json.dumps(message), qos=1).wait_for_publish()
        publisher.loop_stop()
        publisher.disconnect()
        out, err = collector.communicate(timeout=60)
    finally:
        broker.stop()
    assert collector.returncode == 0, err
    summary = json.loads(out)
    assert summary["totals"] == {"cam-north/door": {"in": 8, "out": 6},
                                 "cam-south/door": {"in": 3, "out": 4}}  # fmt: skip


def test_bad_report_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"type": "counts"}\nnot json\n', encoding="utf-8")
    for args, expected in (
        (["--from", str(broken)], "line 2: not JSON"),
        (["--from", str(tmp_path / "absent.jsonl")], "cannot read"),
        (["--from", str(broken), "--plate", "cam1"], "expected DEVICE=PNG"),
        (["--from", str(broken), "--floor-plan", str(broken)], "--floor-scale"),
    ):
        result = run_cli("report", *args, "--out", str(tmp_path / "out"))
        assert result.returncode == 2, (args, result.stderr)
        assert expected in result.stderr and "Traceback" not in result.stderr

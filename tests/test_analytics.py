"""Zones, heatmap, intent signals and the per-window aggregator."""

from __future__ import annotations

import json

import numpy as np
import pytest

from intentcam.aggregator import DailyReset, DayState
from intentcam.analytics import ZoneTracker
from intentcam.analytics.geometry import Polygon, ViewSpace
from intentcam.analytics.heatmap import Heatmap
from intentcam.analytics.intent import IntentSettings, SessionSignals
from intentcam.config import AnalyticsConfig, LineConfig, ZoneConfig
from intentcam.records import iso
from intentcam.view import ViewAnalytics
from tests.cli import run_cli
from tests.data import CONCOURSE

SQUARE = [[0.2, 0.2], [0.6, 0.2], [0.6, 0.6], [0.2, 0.6]]
WALL = 1_700_000_040.0  # divisible by 60 and 10: frame time 0 starts a window


def box_with_foot(x: float, y: float) -> list[float]:
    return [x - 0.02, y - 0.1, x + 0.02, y]


def test_polygon_containment_and_distance() -> None:
    polygon = Polygon(np.array(SQUARE))
    points = np.array([[0.4, 0.4], [0.1, 0.4], [0.7, 0.7]])
    assert polygon.contains(points).tolist() == [True, False, False]
    assert polygon.distance(points) == pytest.approx([0.0, 0.1, np.hypot(0.1, 0.1)])


def test_zone_enter_and_leave_are_debounced_and_back_dated() -> None:
    zone = ZoneTracker("z", "area", SQUARE, enter_s=1.0, leave_s=1.0)
    entered, visits = [], []
    path = [(t / 10, (0.4, 0.4) if 10 <= t < 60 else (0.1, 0.1)) for t in range(100)]
    path[30] = (3.0, (0.1, 0.1))  # one frame of detector jitter outside: no leave
    for now, point in path:
        events = zone.observe(["a"], np.array([point]), now)
        entered += events.entered
        visits += events.visits
    assert entered == [("a", 1.0)]  # reported after 1 s, dated at 1.0
    assert len(visits) == 1
    assert visits[0].entered == 1.0 and visits[0].left == 6.0
    assert zone.occupancy == 0


def test_a_short_visit_below_the_debounce_is_not_an_entry() -> None:
    zone = ZoneTracker("z", "area", SQUARE, enter_s=1.0, leave_s=1.0)
    events = [
        zone.observe(["a"], np.array([(0.4, 0.4) if 5 <= t < 12 else (0.1, 0.1)]), t / 10)
        for t in range(30)
    ]
    assert not any(e.entered for e in events)


def test_a_track_ending_inside_completes_its_visit() -> None:
    zone = ZoneTracker("z", "area", SQUARE, enter_s=0.5, leave_s=1.0)
    for t in range(20):
        zone.observe(["a"], np.array([(0.4, 0.4)]), t / 10)
    visit = zone.end("a")
    assert visit is not None and visit.dwell == pytest.approx(1.9)
    assert len(zone) == 0


def test_heatmap_zeroes_cells_seen_by_fewer_than_k_tokens() -> None:
    heatmap = Heatmap((4, 4), ViewSpace(1.0), k_min=3)
    crowded = np.array([[0.1, 0.1]] * 3)
    for _ in range(10):
        heatmap.add(["a", "b", "c"], crowded, 0.5)  # three people in cell (0, 0)
        heatmap.add(["d"], np.array([[0.9, 0.9]]), 0.5)  # one person alone in the corner
    grid = heatmap.close()
    seconds = grid["seconds"]
    assert seconds[0, 0] == pytest.approx(15.0)  # 3 people x 10 frames x 0.5 s
    assert seconds[3, 3] == 0.0
    assert grid["suppressed_cells"] == 1
    assert heatmap.close()["seconds"].sum() == 0  # a new window starts empty


def test_heatmap_in_floor_metres_with_a_homography() -> None:
    config = AnalyticsConfig(
        homography={
            "image": [[0, 0], [1, 0], [1, 1], [0, 1]],
            "floor": [[0, 0], [10, 0], [10, 5], [0, 5]],
            "floor_size": [10, 5],
        },
        heatmap_grid=(10, 5),
    )
    analytics = ViewAnalytics(config, [], [], aspect=2.0, k_min=1, wall_origin=WALL)
    assert analytics.heatmap.coordinate_space == "floor_m"
    cells = analytics.heatmap.cells(np.array([[0.05, 0.1], [0.95, 0.9]]))
    assert cells.tolist() == [0, 4 * 10 + 9]


def test_intent_signals_for_a_shopper_who_approaches_engages_and_revisits() -> None:
    settings = IntentSettings(min_step=0.03, still_speed=0.05, radius=0.5)
    display = Polygon(np.array([[0.5, 0.5], [0.7, 0.5], [0.7, 0.7], [0.5, 0.7]]))
    session = SessionSignals("t", 0.0, settings)
    path = (
        [(0.1 + 0.04 * i, 0.6) for i in range(11)]  # walks towards the display (0.1 -> 0.5)
        + [(0.55, 0.6)] * 20  # stands still inside it
        + [(0.55 - 0.04 * i, 0.6) for i in range(6)]
    )  # turns back
    for step, (x, y) in enumerate(path):
        point = np.array([x, y])
        inside = bool(display.contains(point[None])[0])
        if inside:  # the engine records this from the zone's debounced entry
            session.entered_displays.add("shelf")
        session.observe(point, step * 0.5, inside, display.distance(point[None]), ["shelf"])
    session.add_visit("shelf", 10.0)
    session.add_visit("shelf", 2.0)
    summary = session.summary()
    assert summary["dwell_s"] == pytest.approx((len(path) - 1) * 0.5)
    assert summary["approach"] == pytest.approx(0.36, abs=0.05)
    assert summary["avoid"] == 0.0  # walking away after engaging is not avoidance
    assert summary["engagement"] > 0.5
    assert summary["hesitation"] == 1  # one reversal
    assert summary["revisits"] == 1
    assert summary["zones"] == {"shelf": {"visits": 2, "dwell_s": 12.0}}
    assert summary["path_length"] == pytest.approx(0.4 + 0.05 + 0.2, abs=0.06)


def test_avoid_counts_turning_away_from_a_display_never_entered() -> None:
    settings = IntentSettings(min_step=0.03, still_speed=0.05, radius=0.5)
    display = Polygon(np.array([[0.5, 0.5], [0.7, 0.5], [0.7, 0.7], [0.5, 0.7]]))
    session = SessionSignals("t", 0.0, settings)
    path = [(0.3 + 0.04 * i, 0.6) for i in range(4)] + [(0.42 - 0.04 * i, 0.6) for i in range(6)]
    for step, (x, y) in enumerate(path):
        point = np.array([x, y])
        session.observe(point, step * 0.5, False, display.distance(point[None]), ["shelf"])
    summary = session.summary()
    assert summary["avoid"] > 0.15 and summary["approach"] > 0.1
    assert -1 <= summary["approach_index"] < 0.5


def test_daily_reset_is_at_local_time() -> None:
    from datetime import datetime, timezone

    reset = DailyReset("04:00", "Europe/Berlin")
    # 02:30 UTC = 03:30 in Berlin (UTC+1 in November): the next reset is 03:00 UTC that day,
    # and after it, 03:00 UTC the next day.
    before = datetime(2026, 11, 21, 2, 30, tzinfo=timezone.utc).timestamp()
    expected = datetime(2026, 11, 21, 3, 0, tzinfo=timezone.utc).timestamp()
    assert reset.next_after(before) == expected
    assert reset.next_after(expected) == expected + 86_400


def feed(analytics: ViewAnalytics, steps: int, dt: float, paths) -> list[dict]:
    records = []
    for step in range(steps):
        tokens, boxes = [], []
        for token, path in paths.items():
            point = path(step)
            if point is not None:
                tokens.append(token)
                boxes.append(box_with_foot(*point))
        records += analytics.observe(step * dt, tokens, np.array(boxes).reshape(-1, 4))
    return records


def test_windows_counts_zones_and_sessions() -> None:
    config = AnalyticsConfig(window_s=10, heatmap_window_s=30, zone_enter_s=0.5, zone_leave_s=0.5)
    lines = [LineConfig(id="door", points=[(0.0, 0.5), (1.0, 0.5)])]
    zones = [
        ZoneConfig(
            id="shelf", kind="display", points=[(0.6, 0.6), (0.9, 0.6), (0.9, 0.9), (0.6, 0.9)]
        )
    ]
    analytics = ViewAnalytics(config, lines, zones, aspect=1.0, k_min=2, wall_origin=WALL)
    walkers = {
        f"w{i}": (lambda step, i=i: (0.2 + 0.1 * i, min(0.2 + 0.05 * max(step - 20 * i, 0), 0.75)))
        for i in range(3)
    }
    records = feed(analytics, 250, 0.1, walkers)  # 25 s: windows [40,50) and [50,60) close
    counts = [r for r in records if r["type"] == "counts"]
    assert [c["window"]["start"] for c in counts] == [
        "2023-11-14T22:14:00.000Z",
        "2023-11-14T22:14:10.000Z",
    ]
    total_in = sum(c["lines"]["door"]["in"] for c in counts)
    assert total_in == 3
    assert counts[-1]["store_occupancy"] == 3
    assert counts[0]["people"]["max"] == 3 and counts[0]["frames"] == 100
    # Nobody reached the shelf (x < 0.6): no entries, nothing to suppress.
    assert counts[0]["zones"]["shelf"]["entries"] == 0
    flushed = analytics.flush(25.0)
    assert [r["type"] for r in flushed] == ["counts", "heatmap"]
    assert flushed[0]["window"]["end"] == "2023-11-14T22:14:25.000Z"


def test_small_dwell_aggregates_are_suppressed_and_sessions_batched() -> None:
    config = AnalyticsConfig(window_s=10, zone_enter_s=0.2, zone_leave_s=0.2)
    zones = [ZoneConfig(id="shelf", kind="display", points=SQUARE)]
    analytics = ViewAnalytics(config, [], zones, aspect=1.0, k_min=3, wall_origin=WALL)
    inside = {"a": lambda step: (0.4, 0.4) if step < 50 else (0.9, 0.9)}
    from intentcam.records import SessionEnd

    records = feed(analytics, 60, 0.1, inside)  # 0.0 .. 5.9 s
    analytics.end_sessions([SessionEnd("a", 0.0, 5.9, "left")])
    records += analytics.observe(12.0, [], np.zeros((0, 4)))  # closes the window [0, 10) s
    counts = [r for r in records if r["type"] == "counts"][0]
    dwell = counts["zones"]["shelf"]["dwell"]
    assert dwell == {"count": 1, "suppressed": True}  # one visit < k = 3: no percentiles
    sessions = [r for r in records if r["type"] == "sessions"]
    assert len(sessions) == 1 and sessions[0]["sessions"][0]["token"] == "a"
    assert sessions[0]["sessions"][0]["zones"]["shelf"]["visits"] == 1


@pytest.mark.slow
def test_run_emits_windows_with_lines_and_zones_on_a_real_clip(tmp_path, config_file) -> None:
    config = config_file("""
[analytics]
window_s = 5
heatmap_window_s = 10
[[lines]]
id = "mid"
points = [[0.0, 0.5], [1.0, 0.5]]
[[zones]]
id = "left"
kind = "display"
points = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]
""")
    out = tmp_path / "out.jsonl"
    result = run_cli(
        "run", "--config", str(config), "--source", str(CONCOURSE), "--sink", f"jsonl:{out}"
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    kinds = {r["type"] for r in records}
    assert {"counts", "sessions", "heatmap", "summary"} <= kinds
    counts = [r for r in records if r["type"] == "counts"]
    assert sum(c["frames"] for c in counts) == 341
    assert sum(c["lines"]["mid"]["in"] + c["lines"]["mid"]["out"] for c in counts) > 0
    assert any(c["zones"]["left"]["entries"] > 0 for c in counts)
    sessions = [s for r in records if r["type"] == "sessions" for s in r["sessions"]]
    assert len({s["token"] for s in sessions}) == len(sessions)  # one summary per token
    assert all(len(s["token"]) == 32 for s in sessions)


def test_zones_replaced_live_mid_session() -> None:
    """set_zones while people are tracked: sessions go on with the new display zones."""
    config = AnalyticsConfig(window_s=10, zone_enter_s=0.2, zone_leave_s=0.2)
    analytics = ViewAnalytics(config, [], [], aspect=1.0, k_min=1, wall_origin=WALL)
    walker = {"a": lambda step: (0.1 + 0.01 * step, 0.5)}
    feed(analytics, 20, 0.1, walker)
    analytics.replace_geometry([], [ZoneConfig(id="shelf", kind="display", points=SQUARE)])
    for step in range(20, 45):  # walks into the new zone (x 0.3 .. 0.54)
        analytics.observe(step * 0.1, ["a"], np.array([box_with_foot(0.1 + 0.01 * step, 0.5)]))
    assert analytics.occupancy()["zones"] == {"shelf": 1}


@pytest.mark.parametrize("visitors, published", [(3, True), (2, False)])
def test_zone_sentiment_means_need_k_sessions(visitors: int, published: bool) -> None:
    from intentcam.records import SessionEnd

    config = AnalyticsConfig(window_s=10, zone_enter_s=0.2, zone_leave_s=0.2, min_session_s=0)
    zones = [ZoneConfig(id="shelf", kind="display", points=SQUARE)]
    analytics = ViewAnalytics(config, [], zones, aspect=1.0, k_min=3, wall_origin=WALL)
    people = {f"p{i}": (lambda step, i=i: (0.3 + 0.05 * i, 0.4)) for i in range(visitors)}
    feed(analytics, 30, 0.1, people)
    analytics.add_expression("p0", np.array([0, 0, 0, 1, 0, 0, 0], float), 1.0)
    analytics.end_sessions([SessionEnd(token, 0.0, 2.9, "left") for token in people])
    counts = analytics.observe(12.0, [], np.zeros((0, 4)))[0]
    zone = counts["zones"]["shelf"]
    assert ("sentiment" in zone) == published
    if published:
        assert zone["sentiment"]["sessions"] == 3 and zone["sentiment"]["expression_sessions"] == 1
        assert zone["sentiment"]["v"][8] == 127  # the one expression sample was pure "happy"


def walkers_in(analytics: ViewAnalytics) -> list[dict]:
    """Three people walking down across the door line (the test above), 25 s."""
    walkers = {
        f"w{i}": (lambda step, i=i: (0.2 + 0.1 * i, min(0.2 + 0.05 * max(step - 20 * i, 0), 0.75)))
        for i in range(3)
    }
    return feed(analytics, 250, 0.1, walkers)


def door_view(
    restored: DayState | None = None, *, events: bool = False, wall: float = WALL
) -> ViewAnalytics:
    config = AnalyticsConfig(window_s=10, heatmap_window_s=30, zone_enter_s=0.5, zone_leave_s=0.5)
    lines = [LineConfig(id="door", points=[(0.0, 0.5), (1.0, 0.5)])]
    zones = [ZoneConfig(id="low", points=[(0.0, 0.6), (1.0, 0.6), (1.0, 1.0), (0.0, 1.0)])]
    return ViewAnalytics(
        config,
        lines,
        zones,
        aspect=1.0,
        k_min=2,
        wall_origin=wall,
        restored=restored,
        events=events,
    )


def test_the_day_continues_from_a_saved_state_of_the_same_day_only() -> None:
    since = DailyReset("04:00", None).last_at_or_before(WALL)
    saved = DayState(since, store_occupancy=5, lines={"door": {"in": 7, "out": 2}}, zones={})
    counts = [r for r in walkers_in(door_view(saved)) if r["type"] == "counts"]
    assert counts[-1]["store_occupancy"] == 5 + 3
    assert counts[-1]["today"]["lines"]["door"] == {"in": 7 + 3, "out": 2}
    assert counts[-1]["today"]["since"] == iso(since)
    # What a counts message carries is what the next start restores from.
    again = DayState.from_saved(counts[-1])
    assert again is not None and again.lines["door"]["in"] == 10 and again.store_occupancy == 8
    yesterday = DayState(since - 86_400, store_occupancy=5, lines={"door": {"in": 7, "out": 2}})
    counts = [r for r in walkers_in(door_view(yesterday)) if r["type"] == "counts"]
    assert counts[-1]["store_occupancy"] == 3
    assert counts[-1]["today"]["lines"]["door"] == {"in": 3, "out": 0}
    assert DayState.from_saved({"today": "garbage"}) is None


def test_the_daily_reset_starts_today_from_zero() -> None:
    reset = DailyReset("04:00", None)
    wall = reset.next_after(WALL) - 12.0  # the walkers cross just before the reset...
    config = AnalyticsConfig(window_s=10, zone_enter_s=0.5, zone_leave_s=0.5)
    lines = [LineConfig(id="door", points=[(0.0, 0.5), (1.0, 0.5)])]
    analytics = ViewAnalytics(config, lines, [], aspect=1.0, wall_origin=wall)
    counts = [r for r in walkers_in(analytics) if r["type"] == "counts"]
    before = [c for c in counts if c["today"]["since"] == iso(reset.last_at_or_before(wall))]
    after = [c for c in counts if c not in before]
    assert before and after, "windows on both sides of the reset"
    assert before[-1]["today"]["lines"]["door"]["in"] == sum(
        c["lines"]["door"]["in"] for c in before
    )
    assert after[-1]["today"]["lines"]["door"]["in"] == sum(
        c["lines"]["door"]["in"] for c in after
    )  # ...and the day after the reset counts only its own windows
    assert after[0]["today"]["since"] == iso(reset.next_after(wall))


def test_a_window_seen_in_part_says_so() -> None:
    analytics = door_view(wall=WALL + 3.0)  # started 3 s into a window
    records = walkers_in(analytics)
    counts = [r for r in records if r["type"] == "counts"]
    first, second = counts
    assert first["partial"] and first["covered_start"] == iso(WALL + 3.0)
    assert first["window"]["start"] == iso(WALL)
    assert "partial" not in second
    last = analytics.flush(25.0)[0]
    assert last["partial"] and last["covered_start"] == last["window"]["start"]


def test_events_are_exactly_what_was_counted() -> None:
    analytics = door_view(events=True)
    records = walkers_in(analytics) + analytics.flush(25.0)
    events = [r for r in records if r["type"] == "event"]
    counts = [r for r in records if r["type"] == "counts"]
    crossings = [e for e in events if e["event"] == "crossing"]
    assert len(crossings) == sum(c["lines"]["door"]["in"] for c in counts) == 3
    assert all(e["line"] == "door" and e["direction"] == "in" for e in crossings)
    entries = [e for e in events if e["event"] == "zone_entry"]
    assert len(entries) == sum(c["zones"]["low"]["entries"] for c in counts) == 3
    assert all("token" not in e for e in events)
    assert analytics.live_state()["today"]["lines"]["door"]["in"] == 3
    assert not [r for r in walkers_in(door_view()) if r["type"] == "event"], "off by default"


def test_the_live_view_reads_every_event_off_the_records_without_a_token() -> None:
    """A door line 2 % above the bottom edge: the shopper leaves the view before getting past
    its hysteresis, so the crossing is completed when the track ends, not in any frame. The
    walk test and the calibrate page read the records the daemon writes, so they count it as
    the daemon does."""
    from intentcam.records import SessionEnd
    from intentcam.service.live import LiveCounts, LiveSink

    config = AnalyticsConfig(window_s=10)
    lines = [LineConfig(id="door", points=[(0.0, 0.98), (1.0, 0.98)])]
    zones = [ZoneConfig(id="table", kind="shelf", points=SQUARE)]
    analytics = ViewAnalytics(config, lines, zones, aspect=1.0, k_min=1, wall_origin=WALL,
                              events=True)  # fmt: skip
    counts = LiveCounts.of(lines, zones)
    seen = []
    sink = LiveSink(lambda event: (seen.append(event), counts.add(event)), WALL)
    records = feed(analytics, 4, 0.1, {"t": lambda step: (0.5, (0.8, 0.9, 0.99, 1.0)[step])})
    for record in records:
        sink.write(record)
    assert seen == []  # no frame counted it
    analytics.end_sessions([SessionEnd("t", 0.0, 0.4, "left")])
    for record in analytics.flush(0.5):
        sink.write(record)
    assert [(e.kind, e.id, e.what, e.at_s) for e in seen] == [("line", "door", "in", 0.3)]
    assert counts.lines == {"door": {"in": 1, "out": 0}}
    assert counts.shelves == {"table": {"reach": 0, "inspect": 0, "put_back": 0}}
    assert seen[0].describe() == "   0.3 s  line door: in"
    assert "t" not in seen[0].as_dict().values()
    # Interactions and alerts, as the daemon writes them; windows and the rest are not events.
    at = iso(WALL + 3.25)
    sink.write({"type": "event", "event": "interaction", "at": at, "zone": "table",
                "interaction": "put_back", "duration_s": 0.84, "token": "secret"})  # fmt: skip
    sink.write({"type": "alert", "alert_id": "ab12cd34", "rule": "help", "kind": "shelf_help",
                "zone": "table", "reason": "a shopper has been at table for 9 s", "at": at})  # fmt: skip
    sink.write({"type": "counts", "at": at})
    assert [e.describe() for e in seen[1:]] == [
        "   3.2 s  shelf table: put-back, 0.8 s",
        "   3.2 s  alert help at table: a shopper has been at table for 9 s",
    ]
    assert counts.shelves["table"]["put_back"] == 1 and counts.alerts == {"table": 1}
    assert "secret" not in json.dumps([e.as_dict() for e in seen])


def test_the_calibrate_page_lists_the_last_events_newest_first() -> None:
    from intentcam.calibrate.server import RECENT_EVENTS, LiveView
    from intentcam.service.live import LiveEvent

    live = LiveView()
    live.reset([LineConfig(id="door", points=[(0.0, 0.5), (1.0, 0.5)])],
               [ZoneConfig(id="table", kind="shelf", points=SQUARE)])  # fmt: skip
    live.event(LiveEvent(1.0, "line", "door", "in"))
    live.event(LiveEvent(2.5, "shelf", "table", "reach", 0.8))
    snapshot = live.snapshot()
    assert snapshot["recent"] == ["2.5 s  shelf table: reach, 0.8 s", "1.0 s  line door: in"]
    assert snapshot["counts"]["shelves"]["table"]["reach"] == 1
    for step in range(RECENT_EVENTS + 5):
        live.event(LiveEvent(3.0 + step, "zone", "table"))
    assert len(live.snapshot()["recent"]) == RECENT_EVENTS
    live.reset([], [])  # a save: counts and the list start again
    assert live.snapshot()["recent"] == [] and live.snapshot()["counts"]["lines"] == {}

"""Shelf interactions: the reach / inspect / put-back state machine on poses made to order, MoveNet
on a real shelf clip, and intentcam eval-shelf against the hand labels."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from intentcam.analytics.geometry import Polygon
from intentcam.analytics.shelf import Interaction, ShelfInteractions, ShelfSettings
from tests.cli import run_cli
from tests.data import DATA, SHELF_CLIPS

SHELF = Polygon(np.array([[0.6, 0.4], [0.9, 0.4], [0.9, 0.8], [0.6, 0.8]]))
FPS = 15.0


def pose(wrist: tuple[float, float], score: float = 0.9) -> np.ndarray:
    """A person standing at x = 0.4 (shoulders at y 0.3, hips at 0.6) with the right wrist at
    ``wrist`` and the left hand hanging by the hip."""
    points = np.zeros((17, 3))
    points[:, 2] = score
    points[5, :2], points[6, :2] = (0.38, 0.3), (0.42, 0.3)  # shoulders
    points[11, :2], points[12, :2] = (0.38, 0.6), (0.42, 0.6)  # hips
    points[9, :2] = (0.36, 0.62)  # left wrist by the hip
    points[10, :2] = wrist
    return points


AT_CHEST = (0.5, 0.35)
ON_SHELF = (0.7, 0.5)  # arm extended: 0.35 from the shoulder, torso 0.3
AWAY = (0.45, 0.4)
LOST = None  # MoveNet sees neither wrist (both under min_score): a hand hidden by products


def lost_hands() -> np.ndarray:
    points = pose(AT_CHEST)
    points[[9, 10], 2] = 0.1
    return points


def run(
    script: list[tuple[float, tuple[float, float] | None]],
    shelf: Polygon = SHELF,
    settings: ShelfSettings | None = None,
    pace: float = 0.0,
) -> list[tuple[str, float, float]]:
    """``script``: (seconds, wrist position or LOST) steps, each held for that long at 15 fps,
    by a person moving at ``pace`` (body heights per second)."""
    person = ShelfInteractions(shelf, settings or ShelfSettings.from_config())
    t = 0.0
    for seconds, wrist in script:
        for _ in range(round(seconds * FPS)):
            person.observe(t, lost_hands() if wrist is LOST else pose(wrist), pace)
            t += 1 / FPS
    person.finish(t)
    return [(e.kind, round(e.start, 2), round(e.end, 2)) for e in person.events]


def test_a_reach_is_a_hand_on_the_shelf_with_the_arm_extended() -> None:
    events = run([(1.0, AT_CHEST), (0.6, ON_SHELF), (0.5, AT_CHEST)])  # then walks off
    assert [kind for kind, _, _ in events] == ["reach"]
    _, start, end = events[0]
    assert start == pytest.approx(1.0, abs=0.1) and end == pytest.approx(1.6, abs=0.1)


def test_a_bent_arm_over_the_shelf_edge_is_not_a_reach() -> None:
    counter = Polygon(np.array([[0.45, 0.35], [0.9, 0.35], [0.9, 0.8], [0.45, 0.8]]))
    over_edge_at_chest = (0.5, 0.38)  # inside the polygon, 0.11 from the shoulder (torso 0.3)
    assert run([(2.0, over_edge_at_chest)], counter) == []
    assert [k for k, _, _ in run([(1.0, (0.75, 0.5))], counter)] == ["reach"]  # arm out: a reach


def test_a_hand_raised_above_the_shoulders_into_a_high_shelf_is_a_reach() -> None:
    # Seen from behind and above, the shelf is above the shopper in the picture and the arm
    # reaches up along the body axis, not sideways from it.
    high = Polygon(np.array([[0.3, 0.0], [0.5, 0.0], [0.5, 0.2], [0.3, 0.2]]))
    overhead = (0.41, 0.12)  # 0.18 above the shoulders (torso 0.3), 0.01 off the axis
    assert [kind for kind, _, _ in run([(1.0, AT_CHEST), (0.6, overhead)], high)] == ["reach"]
    by_the_hip = Polygon(np.array([[0.3, 0.55], [0.5, 0.55], [0.5, 0.7], [0.3, 0.7]]))
    assert run([(2.0, (0.43, 0.62))], by_the_hip) == [], "a hanging arm is not a reach"


def test_flickers_are_ignored_and_short_gaps_do_not_split_a_reach() -> None:
    assert run([(1.0, AT_CHEST), (0.05, ON_SHELF), (1.0, AT_CHEST)]) == []
    events = run([(0.5, ON_SHELF), (0.15, AT_CHEST), (0.5, ON_SHELF), (0.5, AT_CHEST)])
    assert [kind for kind, _, _ in events] == ["reach"]


def test_a_hand_lost_on_the_shelf_keeps_its_reach_for_lost_s_not_end_s() -> None:
    settings = ShelfSettings.from_config()
    assert settings.lost_s > settings.end_s + 0.2
    lost = settings.end_s + 0.2  # longer than end_s, shorter than lost_s
    events = run([(0.5, ON_SHELF), (lost, LOST), (0.5, ON_SHELF), (0.5, AT_CHEST)])
    assert [kind for kind, _, _ in events] == ["reach"], "hidden among the products: one reach"
    assert events[0][2] == pytest.approx(0.5 + lost + 0.5, abs=0.1)
    # Lost for longer than lost_s: the reach ended when the hand was lost.
    events = run([(0.5, ON_SHELF), (settings.lost_s + 0.3, LOST), (0.5, ON_SHELF)])
    assert [(kind, end) for kind, _, end in events][0] == ("reach", pytest.approx(0.5, abs=0.1))
    assert [kind for kind, _, _ in events] == ["reach", "reach"]
    # A hand seen coming out and then lost is out: end_s as before, dated from the last sight.
    events = run([(0.5, ON_SHELF), (0.1, AT_CHEST), (lost, LOST), (0.5, ON_SHELF)])
    assert [kind for kind, _, _ in events] == ["reach", "reach"]
    assert events[0][2] == pytest.approx(0.5, abs=0.1)
    # lost_s = 0 turns it off: a lost hand is an absent one.
    off = replace(settings, lost_s=0.0)
    events = run([(0.5, ON_SHELF), (lost, LOST), (0.5, ON_SHELF)], settings=off)
    assert [kind for kind, _, _ in events] == ["reach", "reach"]


def test_take_look_and_put_back() -> None:
    events = run([(0.5, AT_CHEST), (0.5, ON_SHELF), (2.0, AWAY), (0.5, ON_SHELF), (0.5, AT_CHEST)])
    assert [kind for kind, _, _ in events] == ["reach", "inspect", "reach", "put_back"]
    inspect = events[1]
    assert inspect[1] == pytest.approx(events[0][2], abs=0.01)  # from the end of the pick...
    assert inspect[2] == pytest.approx(events[2][1], abs=0.01)  # ...to the start of the return
    # A quick second reach (no inspecting in between) is not a put back.
    settings = ShelfSettings.from_config()
    gap = settings.end_s + 0.2
    assert gap < settings.inspect_s
    quick = run([(0.5, ON_SHELF), (gap, AWAY), (0.5, ON_SHELF), (0.5, AT_CHEST)])
    assert [kind for kind, _, _ in quick] == ["reach", "reach"]


def test_a_person_walking_past_neither_reaches_nor_inspects() -> None:
    """An arm swinging out over the shelf while walking is not a reach: seen from above, people
    walking past overlap the shelf in the picture."""
    take_and_hold = [(0.3, AT_CHEST), (0.6, ON_SHELF), (1.5, AWAY)]
    standing = run(take_and_hold, pace=0.1)
    assert [kind for kind, _, _ in standing] == ["reach", "inspect"]
    assert run(take_and_hold, pace=0.6) == [], "walking at 0.6 body heights a second"
    no_gate = replace(ShelfSettings.from_config(), walking=0.0)
    assert run(take_and_hold, settings=no_gate, pace=0.6) == standing, "0 turns the check off"
    # A shopper who took something and walks off with it is not inspecting it at the shelf.
    walks_off = ShelfInteractions(SHELF, ShelfSettings.from_config())
    for frame in range(45):
        t, wrist = frame / FPS, ON_SHELF if frame < 9 else AWAY
        walks_off.observe(t, pose(wrist), 0.0 if frame < 12 else 0.6)
    walks_off.finish(45 / FPS)
    assert [e.kind for e in walks_off.events] == ["reach"]


def test_a_pace_is_body_heights_per_second_over_half_a_second() -> None:
    from intentcam.analytics.shelf import PACE_WINDOW_S, Paces

    paces = Paces(aspect=16 / 9)
    for frame in range(16):  # 1.0 s at 15 fps
        t = frame / FPS
        near = 0.1 * t  # frame heights per second, to the right
        paces.update(
            ["near", "far", "reaching", "raising", "coming"],
            np.array([
                [(0.2 + near) / (16 / 9), 0.2, (0.4 + near) / (16 / 9), 0.6],  # 0.4 tall
                [(1.0 + near) / (16 / 9), 0.4, (1.1 + near) / (16 / 9), 0.6],  # 0.2 tall
                [0.7, 0.2, 0.8 + 0.3 * t, 0.6],  # standing, an arm goes out sideways
                [0.5, 0.2 - 0.2 * t, 0.6, 0.6],  # standing, an arm goes up
                [0.1, 0.3 + 0.1 * t, 0.2 + 0.05 * t, 0.5 + 0.3 * t],  # walks towards the camera
            ]),
            t,
        )  # fmt: skip
        if frame == 1:
            assert paces.of("near") == 0.0, "too soon to tell: taken as standing"
    # The same 0.1 frame heights a second, in x times the aspect ratio: a quarter of the near
    # person's height a second, half of the far one's.
    assert paces.of("near") == pytest.approx(0.25, rel=0.05)
    assert paces.of("far") == pytest.approx(0.5, rel=0.05)
    # An arm moves one edge of the box, and fast: 0.3 of the frame's width a second, which the
    # box's centre would have read as walking at 0.67 body heights a second.
    assert paces.of("reaching") == 0.0, "a box widening by an arm held out is not walking"
    assert paces.of("raising") == 0.0, "a box growing upwards by a raised arm is not walking"
    # Coming closer, the box grows as it moves down: its top edge moves 0.1 frame heights a
    # second, its bottom 0.3; the lesser, over its median height (0.35), is the pace.
    assert paces.of("coming") == pytest.approx(0.1 / 0.35, rel=0.1)
    assert paces.walking(["near", "far", "reaching"], [0, 1, 2], over=0.3) == {1}
    assert paces.walking(["near", "far", "reaching"], [0, 2], over=0.2) == {0}, "only those asked"
    assert paces.walking(["near", "far", "reaching"], [0, 1, 2], over=0.0) == set(), "gate off"
    paces.update(["near"], np.array([[0.2, 0.2, 0.4, 0.6]]), 1.0 + PACE_WINDOW_S + 0.1)
    assert paces.of("far") == 0.0, "forgotten once unseen for the window"
    assert paces.of("near") == 0.0, "back after a gap: no pace until there is history again"


def test_movenet_finds_the_shopper_on_a_real_shelf_clip(model_dir: Path) -> None:
    from intentcam.config import load_config
    from intentcam.detect import build_detector
    from intentcam.inference.model import load_model
    from intentcam.models.manifest import load_manifest
    from intentcam.pose.movenet import PoseModel

    settings = load_config(None, overrides={"paths": {"model_dir": str(model_dir)}})
    detector = build_detector(settings)
    model = load_model(load_manifest(None).get("movenet_lightning"), model_dir, delegate="cpu")
    capture = cv2.VideoCapture(str(SHELF_CLIPS / "set-a-normal-6.mp4"))
    ok, image = capture.read()
    assert ok
    (box,) = [b for b in detector.detect(image).boxes if (b[3] - b[1]) > 0.4]  # the shopper
    points = PoseModel(model).keypoints(image, box)
    confident = points[:, 2] >= 0.3
    assert confident.sum() >= 10
    inside = (points[confident, 0] >= box[0] - 0.05) & (points[confident, 0] <= box[2] + 0.05)
    assert inside.all(), "keypoints belong to the person in the box"
    shoulders, hips, ankles = (
        points[5:7, 1].mean(),
        points[11:13, 1].mean(),
        points[15:17, 1].mean(),
    )
    assert shoulders < hips < ankles, "upright: shoulders above hips above ankles"


def test_a_hand_raised_above_the_head_is_in_the_crop_above_the_box(model_dir: Path) -> None:
    """The store-aisle clip, frame 30: the detector's box of the woman at the right ends at
    her head while her hand is up at a high shelf; only a crop grown above the box sees it."""
    from intentcam.config import load_config
    from intentcam.detect import build_detector
    from intentcam.inference.model import load_model
    from intentcam.models.manifest import load_manifest
    from intentcam.pose.movenet import PoseModel

    settings = load_config(None, overrides={"paths": {"model_dir": str(model_dir)}})
    model = load_model(load_manifest(None).get("movenet_lightning"), model_dir, delegate="cpu")
    capture = cv2.VideoCapture(str(DATA / "videos" / "intel_store_aisle_preview.avi"))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 30)
    ok, image = capture.read()
    assert ok
    boxes = build_detector(settings).detect(image).boxes
    (box,) = [b for b in boxes if 0.68 < (b[0] + b[2]) / 2 < 0.78 and b[1] < 0.4]  # the woman
    wrists = [9, 10]
    pose = PoseModel(model, top_share=0.5, above=0.3)
    level = pose.keypoints(image, box)[wrists]
    grown = pose.keypoints(image, box, reach_up=True)[wrists]
    assert level[:, 2].max() < 0.3, "the hand is cut off: no confident wrist"
    raised = grown[grown[:, 2].argmax()]
    assert raised[2] >= 0.5 and raised[1] < box[1], "a confident wrist above the box's top"


def test_only_a_shelf_rising_above_a_head_has_the_crop_reach_up() -> None:
    from intentcam.analytics.shelf import ShelfWatch

    shelving = [[0.6, 0.0], [1.0, 0.0], [1.0, 1.0], [0.8, 1.0]]  # floor to ceiling, at the right
    table = [[0.2, 0.6], [0.5, 0.6], [0.5, 0.9], [0.2, 0.9]]  # waist high, at the left
    watch = ShelfWatch({"shelving": shelving, "table": table}, ShelfSettings.from_config(), 0.05)
    boxes = np.array([[0.7, 0.3, 0.8, 0.9],  # in front of the shelving: its top is above her
                      [0.35, 0.3, 0.5, 0.9],  # at the table, head above its top
                      [0.05, 0.1, 0.15, 0.4]])  # at neither  # fmt: skip
    at = watch.at_shelf(boxes)
    assert at.tolist() == [[True, False], [False, True], [False, False]]
    assert watch.above_heads(boxes, at).tolist() == [True, False, False]
    assert watch.above_heads(np.zeros((0, 4)), at[:0]).tolist() == []


def test_an_arm_is_judged_in_the_pictures_own_proportions_on_any_aspect_ratio() -> None:
    """The same shopper, in pixels, seen by a 4:3 camera and by a 16:9 one that shows the same
    scene with bars at the sides: the arm held out sideways is a reach on both. Torso lengths
    measured on normalised coordinates would shrink a sideways arm by the aspect ratio, so a
    threshold chosen on 4:3 clips would be a stricter one on every 16:9 camera."""
    from intentcam.analytics.shelf import ShelfWatch

    # Pixels of a 640x480 picture: torso 144 px, the wrist 0.6 torso lengths out to the side,
    # over a table in front of the shopper.
    shoulders, hips, wrist = (256.0, 144.0), (256.0, 288.0), (256.0 + 0.6 * 144, 200.0)
    hanging = (250.0, 300.0)
    table = [(320.0, 150.0), (600.0, 150.0), (600.0, 400.0), (320.0, 400.0)]
    box = (200.0, 100.0, 310.0, 460.0)
    found = {}
    for width, pad in ((640, 0), (854, 107)):  # 4:3, and the same pillarboxed into 16:9

        def norm(x: float, y: float, width: int = width, pad: int = pad) -> tuple[float, float]:
            return ((x + pad) / width, y / 480)

        points = np.zeros((17, 3))
        points[:, 2] = 0.9
        points[[5, 6], :2] = norm(*shoulders)
        points[[11, 12], :2] = norm(*hips)
        points[9, :2], points[10, :2] = norm(*hanging), norm(*wrist)
        settings = replace(ShelfSettings.from_config(), extension=0.5)
        watch = ShelfWatch({"table": [list(norm(*c)) for c in table]}, settings, 0.05,
                           aspect=width / 480)  # fmt: skip
        boxes = np.array([[*norm(*box[:2]), *norm(*box[2:])]])
        events = []
        for frame in range(30):
            t = frame / FPS
            watch.present(["shopper"], boxes, watch.at_shelf(boxes), t)
            events += watch.observe("shopper", t, points)
        events += watch.end("shopper", 30 / FPS)
        found[width] = [e.event.kind for e in events]
    assert found == {640: ["reach"], 854: ["reach"]}


def test_labels_name_shelves_and_videos_or_say_what_is_wrong(tmp_path: Path) -> None:
    from intentcam.errors import UserError
    from intentcam.evaluation.shelf_labels import load_labels

    (tmp_path / "clips").mkdir()
    (tmp_path / "elsewhere.mp4").write_bytes((SHELF_CLIPS / "set-c-normal-11.mp4").read_bytes())
    square = [[0, 0], [1, 0], [1, 1], [0, 1]]
    two = {"video": "../elsewhere.mp4", "shelves": {"a": square, "b": square},
           "events": [{"kind": "reach", "shelf": "b", "start": 1, "end": 4}]}  # fmt: skip
    (tmp_path / "labels.json").write_text(json.dumps({"clips": {"two": two}}))
    (clip,) = load_labels(tmp_path, tmp_path / "clips")
    assert clip.path == tmp_path / "clips" / "../elsewhere.mp4" and clip.split == "test"
    assert [len(clip.events[shelf]) for shelf in ("a", "b")] == [0, 1]
    two["events"] = [{"kind": "reach", "start": 1, "end": 4}]  # which of the two shelves?
    (tmp_path / "labels.json").write_text(json.dumps({"clips": {"two": two}}))
    with pytest.raises(
        UserError, match=r"clips.two: events.0: name its shelf, one of \['a', 'b'\]"
    ):
        load_labels(tmp_path, tmp_path / "clips")
    two.update(video="../missing.mp4", events=[])
    (tmp_path / "labels.json").write_text(json.dumps({"clips": {"two": two}}))
    with pytest.raises(UserError, match="missing.mp4: no video for clip 'two' labelled in "):
        load_labels(tmp_path, tmp_path / "clips")
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    two.update(video="../broken.mp4")
    (tmp_path / "labels.json").write_text(json.dumps({"clips": {"two": two}}))
    with pytest.raises(UserError, match="broken.mp4: no decodable video frames"):
        load_labels(tmp_path, tmp_path / "clips")


def test_labels_in_pixels_and_seconds_are_the_same_labels_as_in_fractions_and_frames(
    tmp_path: Path,
) -> None:
    """A labeller working in a video player and an annotation tool gives seconds and pixels (and
    labels per person, as the issue asks); the 640x480, 15 fps clip turns them into exactly the
    fractions and frames we label in."""
    from intentcam.evaluation.shelf_labels import load_labels

    fractions = [[0.45, 0.45], [0.62, 0.40], [0.84, 0.86], [0.46, 0.95]]
    ours = {"shelf": fractions, "events": [{"kind": "reach", "start": 51, "end": 89},
                                           {"kind": "inspect", "start": 60, "end": 74}]}  # fmt: skip
    theirs = {
        "shelf": [[x * 640, y * 480] for x, y in fractions],
        "events": [{"kind": "reach", "start_s": 51 / 15, "end_s": 90 / 15, "person": 1},
                   {"kind": "inspect", "start_s": 4.0, "end_s": 5.0, "person": "A",
                    "note": "turns the box"}],
    }  # fmt: skip
    (tmp_path / "ours").mkdir()
    (tmp_path / "ours" / "labels.json").write_text(json.dumps({"clips": {"set-a-normal-6": ours}}))
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "labels.json").write_text(
        json.dumps({"coordinates": "pixels", "clips": {"set-a-normal-6": theirs}})
    )
    (mine,) = load_labels(tmp_path / "ours", SHELF_CLIPS)
    (other,) = load_labels(tmp_path / "theirs", SHELF_CLIPS)
    assert np.allclose(other.shelves["shelf"], mine.shelves["shelf"])
    for a, b in zip(other.events["shelf"], mine.events["shelf"], strict=True):
        assert a.kind == b.kind and a.start == pytest.approx(b.start)
        assert a.end == pytest.approx(b.end)
    assert [e.person for e in other.events["shelf"]] == [1, "A"]


def test_the_json_names_the_labellers_person_on_their_labels_and_no_one_on_detections() -> None:
    """Labelled per person, the rows of ``eval-shelf --json`` say whose reach was missed; a
    detection's track stays anonymous, and a label given without a person carries none."""
    from intentcam.evaluation.shelf import event_rows
    from intentcam.evaluation.shelf_labels import LabelledEvent

    found = [Interaction("reach", 1.2, 2.0), Interaction("reach", 9.0, 9.5)]
    labelled = [LabelledEvent("reach", 1.0, 2.0, "A"), LabelledEvent("reach", 4.0, 5.0, 2),
                LabelledEvent("reach", 7.0, 7.5)]  # fmt: skip
    rows = event_rows(found, labelled, "shelf")
    labels = [(r["start"], r.get("person"), r["matched"]) for r in rows if r["source"] == "label"]
    assert labels == [(1.0, "A", True), (4.0, 2, False), (7.0, None, False)]
    assert [r["matched"] for r in rows if r["source"] == "found"] == [True, False]
    assert not any("person" in r for r in rows if r["source"] == "found")


def test_the_text_report_lists_whose_labels_were_missed_and_says_when_a_share_has_no_whole() -> (
    None
):
    """A labeller reading the table sees each missed test label with its person, and a kind
    nothing was detected or labelled of reads n/a, not None."""
    from intentcam.cli.eval_shelf_cmd import text_report
    from intentcam.evaluation.shelf import counts_by_kind, event_rows, pooled
    from intentcam.evaluation.shelf_labels import LabelledEvent

    labelled = [LabelledEvent("reach", 1.0, 2.0, "A"), LabelledEvent("reach", 4.0, 5.0, 2),
                LabelledEvent("inspect", 2.0, 3.5)]  # fmt: skip
    events = event_rows([Interaction("reach", 1.2, 2.0)], labelled, "shelf")
    events += event_rows([], [LabelledEvent("reach", 8.0, 9.0, "B")], "fridge")
    row = {"clip": "aisle-3", "split": "test", "false_in_quiet": 0, "events": events,
           **counts_by_kind(events)}  # fmt: skip
    scored = pooled([(row, 0.1)])
    result = {"settings": {"extension": 0.5, "end_s": 0.4}, "tune": {"clips": []},
              "all": scored, "test": scored}  # fmt: skip
    lines = text_report(result).splitlines()
    assert lines[0] == "thresholds (from the config): extension 0.5, end_s 0.4"
    assert "aisle-3" in lines[2] and "1/1/3" in lines[2] and "0/0/1" in lines[2]
    missed = lines[lines.index("test labels not found:") + 1 :][:3]
    assert [line.split() for line in missed] == [
        ["aisle-3", "reach", "4-5", "s", "person", "2"],
        ["aisle-3", "inspect", "2-3.5", "s"],
        ["aisle-3", "reach", "8-9", "s", "at", "fridge", "person", "B"],
    ]
    assert any(line.startswith("test reach: precision 1.0, recall 0.333 ") for line in lines)
    put_back = next(line for line in lines if line.startswith("test put_back"))
    assert "precision n/a (nothing detected), recall n/a (nothing labelled)" in put_back
    assert "None" not in "\n".join(lines)


def test_a_clip_whose_container_misstates_its_frame_rate_is_timed_at_the_labels_rate(
    tmp_path: Path,
) -> None:
    """The concourse clip's container says 50 fps; its frames are 40 ms apart, as the daemon
    times them. A labeller's ``fps`` says so, and seconds become frames at that rate."""
    from intentcam.evaluation.shelf_labels import load_labels

    clip = {"video": "concourse_overhead.avi", "shelf": [[0.4, 0.5], [0.6, 0.5], [0.5, 0.7]],
            "events": [{"kind": "reach", "start_s": 2.0, "end_s": 3.0}]}  # fmt: skip
    (tmp_path / "labels.json").write_text(json.dumps({"clips": {"concourse": clip}}))
    (stated,) = load_labels(tmp_path, DATA)
    (tmp_path / "labels.json").write_text(json.dumps({"clips": {"concourse": clip | {"fps": 25}}}))
    (true,) = load_labels(tmp_path, DATA)
    assert (stated.fps, stated.events["shelf"][0].start) == (None, 100.0)
    assert (true.fps, true.events["shelf"][0].start) == (25, 50.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"shelf": [[300, 250], [430, 240], [550, 470]]},
         r"clips.c.shelf: point \(300.0, 250.0\) is outside the image.*\"coordinates\": \"pixels\""),
        ({"shelf": [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]}, "clips.c.shelf: the polygon has no area"),
        ({"coordinates": "pixels", "shelf": [[300, 250], [700, 240], [550, 470]]},
         r"clips.c.shelf: point \(700.0, 240.0\) is outside the 640x480 frame$"),
        ({"events": [{"kind": "pickup", "start": 1, "end": 2}]},
         "clips.c.events.0.kind: Input should be 'reach', 'inspect' or 'put_back'"),
        ({"events": [{"kind": "reach", "start": 9, "end": 2}]},
         r"clips.c.events.0: ends \(2\) before it starts \(9\)"),
        ({"events": [{"kind": "reach", "start": 1, "end_s": 2.0}]},
         "clips.c.events.0: give the interval as start and end"),
        ({"events": [{"kind": "reach", "start": 1, "end": 2, "start_s": 0.1}]},
         "clips.c.events.0: give the interval as start and end"),
        ({"events": [{"kind": "reach", "start_s": 30.0, "end_s": 31.0}]},
         r"clips.c.events.0: starts at frame 450, after the clip's last \(89 at 15 fps\)"),
        ({"split": "train"}, "clips.c.split: Input should be 'tune' or 'test'"),
        ({"evnts": []}, r"clips.c.evnts: unknown field \(check the spelling against evaluation/shelf"),
        ({"shelves": {"a": [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]}},
         "clips.c: give one 'shelf' polygon or several as 'shelves' by id"),
    ],
)  # fmt: skip
def test_labels_that_could_not_be_scored_stop_naming_the_clip_and_field(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    """Someone else's labels decide the held-out check: a polygon in pixels, a kind we do not
    detect or frames past the clip's end would otherwise score as a silent recall of nothing."""
    from intentcam.errors import ConfigError
    from intentcam.evaluation.shelf_labels import load_labels

    change = dict(change)
    coordinates = change.pop("coordinates", "normalised")
    clip = {"shelf": [[0.4, 0.5], [0.7, 0.5], [0.8, 0.9], [0.4, 0.95]], "video": "set-c-normal-11.mp4",
            "events": [{"kind": "reach", "start": 3, "end": 9}]} | change  # fmt: skip
    (tmp_path / "labels.json").write_text(
        json.dumps({"coordinates": coordinates, "clips": {"c": clip}})
    )
    with pytest.raises(ConfigError, match=message):
        load_labels(tmp_path, SHELF_CLIPS)


def test_eval_shelf_stops_on_bad_labels_with_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "labels.json").write_text(
        json.dumps({"clips": {"set-c-normal-11": {"shelf": [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]],
                                                  "events": [{"kind": "grab", "start": 1, "end": 2}]}}})
    )  # fmt: skip
    result = run_cli("eval-shelf", str(SHELF_CLIPS), "--labels", str(tmp_path), "--json")
    assert result.returncode == 2
    assert result.stdout == "" and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "error" in line]
    assert "clips.set-c-normal-11.events.0.kind" in line


def test_eval_shelf_with_no_test_clip_stops_with_one_line_and_exit_2(
    model_dir: Path, tmp_path: Path
) -> None:
    labels = {"clips": {"set-c-normal-11": {"shelf": [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]],
                                            "split": "tune", "events": []}}}  # fmt: skip
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    config = tmp_path / "c.toml"
    config.write_text(f'[paths]\nmodel_dir = "{model_dir}"\n', encoding="utf-8")
    result = run_cli("eval-shelf", str(SHELF_CLIPS), "--labels", str(tmp_path), "--config",
                     str(config), "--json")  # fmt: skip
    assert result.returncode == 2 and result.stdout == ""
    assert "no clip is labelled 'test': nothing to report on" in result.stderr


def bar_ids(svg: str) -> list[str]:
    """The ids of a timeline's bars, less their number: ``STATUS-SOURCE-KIND``."""
    return sorted(
        re.sub(r"-\d+$", "", i) for i in re.findall(r'id="((?:matched|missed|false)-[^"]+)"', svg)
    )


def test_events_are_paired_within_the_tolerance_and_drawn_by_what_became_of_them(
    tmp_path: Path,
) -> None:
    from intentcam.errors import UserError
    from intentcam.evaluation.shelf import event_counts, event_rows
    from intentcam.evaluation.shelf_labels import LabelledEvent
    from intentcam.evaluation.shelf_timeline import check_timeline_path, timeline

    labelled = [Interaction("reach", 1.0, 2.0), LabelledEvent("reach", 5.0, 6.0, "B"),
                Interaction("inspect", 2.0, 4.0)]  # fmt: skip
    found = [Interaction("reach", 1.4, 2.2), Interaction("reach", 5.6, 6.0),  # 0.6 s late
             Interaction("inspect", 2.3, 4.0), Interaction("reach", 1.1, 1.3)]  # fmt: skip
    events = event_rows(found, labelled, "shelf")
    # One label, one match: the other early detection is false.
    assert event_counts(events, "reach") == [1, 3, 2]
    assert event_counts(events, "inspect") == [1, 1, 1]
    assert event_counts(events, "put_back") == [0, 0, 0]
    row = {"clip": "c", "split": "test", "seconds": 7.0, "events": events}
    svg = timeline([row]).decode()
    # The labeller's person is written on their missed label's bar, and on nothing else.
    assert re.findall(r'id="(person-[^"]+)"', svg) == ["person-missed-label-reach-0"]
    assert bar_ids(svg) == sorted(
        ["matched-label-reach", "missed-label-reach", "matched-found-reach", "false-found-reach",
         "false-found-reach", "matched-label-inspect", "matched-found-inspect"]
    )  # fmt: skip
    assert timeline([row], "png").startswith(b"\x89PNG")
    for wrong, message in ((tmp_path / "t.gif", "write .svg or .png, not '.gif'"),
                           (tmp_path / "no" / "t.svg", "no folder")):  # fmt: skip
        with pytest.raises(UserError, match=message):
            check_timeline_path(wrong)


def test_detections_that_overlap_in_time_are_drawn_side_by_side() -> None:
    from intentcam.evaluation.shelf_timeline import slots

    def at(*spans: tuple[float, float]) -> list[dict[str, float]]:
        return [{"start": a, "end": b} for a, b in spans]

    # Two people reaching at once, then a third after the first is done, then one alone.
    assert slots(at((0.4, 2.7), (0.9, 4.0), (3.0, 3.5), (5.0, 6.0))) == [0, 1, 0, 0]
    assert slots(at((0.0, 1.0), (1.0, 2.0))) == [0, 0], "one after the other: one sub-lane"
    assert slots(at((3.0, 3.5), (0.4, 2.7), (0.9, 4.0))) == [0, 0, 1], "by start, in any order"
    assert slots([]) == []


@pytest.mark.slow
def test_eval_shelf_reports_every_labelled_clip(model_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    # Thresholds outside the tuning grid are the configured ones, not the defaults.
    config.write_text(f'[paths]\nmodel_dir = "{model_dir}"\n[shelf]\nlost_s = 0.7\ninspect_s = 0.9\n',
                      encoding="utf-8")  # fmt: skip
    picture = tmp_path / "timeline.svg"
    result = run_cli("eval-shelf", str(SHELF_CLIPS), "--config", str(config), "--json",
                     "--timeline", str(picture), timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["settings"]["lost_s"], report["settings"]["inspect_s"]) == (0.7, 0.9)
    reach = report["all"]["total"]["reach"]
    drawn = bar_ids(picture.read_text(encoding="utf-8"))
    assert (
        drawn.count("matched-found-reach") == drawn.count("matched-label-reach") == reach["matched"]
    )
    assert drawn.count("false-found-reach") == reach["detected"] - reach["matched"]
    assert drawn.count("missed-label-reach") == reach["labelled"] - reach["matched"]
    labels = json.loads((Path(__file__).parents[1] / "evaluation/shelf/labels.json").read_text())
    assert {row["clip"] for row in report["all"]["clips"]} == set(labels["clips"])
    assert {row["clip"] for row in report["test"]["clips"]} == {
        name for name, clip in labels["clips"].items() if clip["split"] == "test"
    }
    labelled = sum(1 for c in labels["clips"].values() for e in c["events"] if e["kind"] == "reach")
    assert labelled >= 16
    assert report["all"]["total"]["reach"]["labelled"] == labelled
    walking_past = next(r for r in report["all"]["clips"] if r["clip"] == "set-c-normal-11")
    assert walking_past["reach"][1] == 0, "people walking past the shelf reach for nothing"
    from intentcam.cli.eval_shelf_cmd import text_report

    assert f"recall {report['test']['total']['reach']['recall']} " in text_report(report)


def test_the_camera_variants_of_the_invariance_bench_move_shelf_and_labels_along(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hw_bench/shelf_invariance.py re-encodes a labelled clip as another camera would see it;
    its polygon must still lie over the same pixels and its labels on the same moments, or the
    bench would blame the detector for its own mistake."""
    import importlib

    from intentcam.analytics.shelf import Interaction
    from intentcam.evaluation.shelf_labels import LabelledClip

    # The bench scripts import each other as a script run from hw_bench/ would.
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "hw_bench"))
    for name in ("shelf_invariance", "shelf_clips"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    bench = importlib.import_module("shelf_invariance")
    points = [[0.45, 0.45], [0.62, 0.40], [0.84, 0.86], [0.46, 0.95]]
    clip = LabelledClip("set-a-normal-6", SHELF_CLIPS / "set-a-normal-6.mp4",
                        {"shelf": points}, "test", {"shelf": [Interaction("reach", 51, 89)]})  # fmt: skip
    original = first_frame(clip.path)
    for variant in bench.VARIANTS:
        folder = tmp_path / str(bench.VARIANTS.index(variant))
        folder.mkdir()
        moved = bench.transformed(clip, variant, folder)
        picture = first_frame(moved.path)
        for before, after in zip(points, moved.shelves["shelf"]):
            assert patch(picture, after) == pytest.approx(patch(original, before), abs=20), (
                f"{variant.name}: the shelf corner {before} moved off its pixels"
            )
        frames = int(cv2.VideoCapture(str(moved.path)).get(cv2.CAP_PROP_FRAME_COUNT))
        assert frames == -(-90 // variant.step)
        event = moved.events["shelf"][0]
        assert (event.start, event.end) == (51 // variant.step, 89 // variant.step)
    # A clip labelled with its true rate (its container's being wrong) is written at that
    # rate, which the variant's own container then states.
    half_rate = next(variant for variant in bench.VARIANTS if variant.step == 2)
    slower = bench.transformed(replace(clip, fps=7.5), half_rate, tmp_path)
    assert slower.fps is None
    assert cv2.VideoCapture(str(slower.path)).get(cv2.CAP_PROP_FPS) == pytest.approx(3.75)


def test_the_labeller_variants_move_polygons_and_reach_starts_as_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """hw_bench/shelf_labellers.py scores the labels as another labeller might draw and date
    them: a polygon scaled about its own centre (inside the frame), reach and put-back starts
    moved by whole frames but never before the clip or past their own end, inspects untouched."""
    import importlib

    from intentcam.analytics.shelf import Interaction
    from intentcam.evaluation.shelf_labels import LabelledClip

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "hw_bench"))
    for name in ("shelf_labellers", "shelf_clips"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    bench = importlib.import_module("shelf_labellers")
    points = [[0.45, 0.45], [0.62, 0.40], [0.84, 0.86], [0.46, 0.95]]
    events = [Interaction("reach", 2, 20), Interaction("inspect", 21, 40),
              Interaction("reach", 41, 43), Interaction("put_back", 41, 43)]  # fmt: skip
    clip = LabelledClip("c", Path("c.mp4"), {"shelf": points}, "test", {"shelf": events})

    earlier = bench.relabelled(clip, bench.LabelVariant("e", shift_s=-0.2), fps=15.0)
    assert [(e.kind, e.start, e.end) for e in earlier.events["shelf"]] == [
        ("reach", 0, 20), ("inspect", 21, 40), ("reach", 38, 43), ("put_back", 38, 43)
    ]  # fmt: skip
    later = bench.relabelled(clip, bench.LabelVariant("l", shift_s=0.4), fps=15.0)
    assert [e.start for e in later.events["shelf"]] == [8, 21, 43, 43]
    assert earlier.shelves == clip.shelves

    def area(corners: np.ndarray) -> float:
        x, y = corners[:, 0], corners[:, 1]
        return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))

    for scale in (0.9, 1.1):
        scaled = bench.relabelled(clip, bench.LabelVariant("s", scale=scale), fps=15.0)
        drawn = np.asarray(scaled.shelves["shelf"])
        assert drawn.mean(axis=0) == pytest.approx(np.mean(points, axis=0))
        assert area(drawn) == pytest.approx(area(np.asarray(points)) * scale**2)
        assert scaled.events == clip.events
    at_the_edge = bench.scaled_polygon([[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]], 1.1)
    assert min(min(point) for point in at_the_edge) >= 0.0
    assert max(max(point) for point in at_the_edge) <= 1.0


def first_frame(path: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    ok, image = capture.read()
    capture.release()
    assert ok, path
    return image


def patch(image: np.ndarray, point: list[float]) -> list[float]:
    """The mean colour around a normalised point, over 2 % of the picture's height."""
    height, width = image.shape[:2]
    x, y = int(point[0] * (width - 1)), int(point[1] * (height - 1))
    r = max(int(0.02 * height), 1)
    return (
        image[max(y - r, 0) : y + r + 1, max(x - r, 0) : x + r + 1].reshape(-1, 3).mean(0).tolist()
    )


def test_polygon_overlap_of_two_labellers_is_intersection_over_union() -> None:
    from intentcam.evaluation.shelf_agreement import polygon_iou

    square = [[0.2, 0.2], [0.6, 0.2], [0.6, 0.6], [0.2, 0.6]]
    left_half = [[0.2, 0.2], [0.4, 0.2], [0.4, 0.6], [0.2, 0.6]]
    assert polygon_iou(square, square) == pytest.approx(1.0)
    assert polygon_iou(square, left_half) == pytest.approx(0.5, abs=0.01)
    assert polygon_iou(square, [[0.7, 0.7], [0.9, 0.7], [0.9, 0.9]]) == 0.0


def test_two_labellers_agree_on_the_events_whose_starts_are_within_the_tolerance() -> None:
    """The second labeller's events are scored against the first's as detections are: same
    kind and shelf, starts within 0.5 s, each label once; a shelf one labeller did not draw
    overlaps nothing, and clips only one labelled are named, not scored."""
    from intentcam.analytics.shelf import Interaction
    from intentcam.evaluation.shelf_agreement import agreement
    from intentcam.evaluation.shelf_labels import LabelledClip

    table = [[0.4, 0.5], [0.8, 0.5], [0.8, 0.9], [0.4, 0.9]]

    def clip(name: str, split: str, reaches: list[int], shelves: list[str]) -> LabelledClip:
        events = {s: [Interaction("reach", r, r + 10) for r in reaches] for s in shelves[:1]}
        return LabelledClip(name, Path(name), {s: table for s in shelves}, split,
                            events | {s: [] for s in shelves[1:]})  # fmt: skip

    first = [clip("a", "test", [0, 30], ["table"]), clip("b", "tune", [15], ["table"]),
             clip("only-first", "test", [0], ["table"])]  # fmt: skip
    # at 15 fps: 6 frames (0.4 s) late matches, 15 frames (1 s) late does not
    second = [clip("a", "test", [6, 45, 80], ["table", "wall"]), clip("b", "tune", [15], ["table"]),
              clip("only-second", "test", [0], ["table"])]  # fmt: skip
    result = agreement(first, second, fps_of=lambda _: 15.0)

    rows = {row["clip"]: row for row in result["clips"]}
    assert set(rows) == {"a", "b"}
    assert rows["a"]["reach"] == [1, 3, 2]
    assert rows["a"]["reach_start_shifts_s"] == [pytest.approx(0.4)]
    assert rows["a"]["polygon_iou"] == {"table": 1.0, "wall": 0.0}
    assert result["total"]["test"]["reach"]["of_first"] == 0.5
    assert result["total"]["test"]["reach"]["of_second"] == pytest.approx(0.333)
    assert result["total"]["all"]["reach"]["both"] == 2
    assert result["only_first"] == ["only-first"] and result["only_second"] == ["only-second"]


def test_the_second_labellers_labels_cover_the_first_labellers_shelf_clips() -> None:
    """evaluation/shelf/second is a blind second labelling of the same clips (the concourse,
    with its drawn floor displays and no events, excepted); both load, and by the README's
    count they agree on 7 of 11 test reaches and 5 of 5 tune reaches."""
    from intentcam.evaluation.shelf_agreement import agreement
    from intentcam.evaluation.shelf_labels import load_labels
    from intentcam.resources import project_file

    first = load_labels(project_file("evaluation/shelf"), SHELF_CLIPS)
    second = load_labels(project_file("evaluation/shelf/second"), SHELF_CLIPS)
    result = agreement(first, second)
    assert result["only_first"] == ["concourse_overhead"] and result["only_second"] == []
    assert {c.name: c.split for c in second} == {c.name: c.split for c in first
                                                 if c.name != "concourse_overhead"}  # fmt: skip
    test, tune = result["total"]["test"]["reach"], result["total"]["tune"]["reach"]
    assert (test["both"], test["second"], test["first"]) == (7, 11, 11)
    assert (tune["both"], tune["second"], tune["first"]) == (5, 5, 5)


def test_the_adjudicated_labels_settle_only_the_reaches_the_two_labellers_part_on() -> None:
    """evaluation/shelf/adjudicated is the first labeller's file with the disagreements settled
    from the frames: the tune clips and every clip the two agreed on are left as they were, a
    settled clip says why, and by the README's count the settled test clips hold 12 reaches, 11
    of them the second's and 8 the first's."""
    from intentcam.evaluation.shelf_agreement import agreement
    from intentcam.evaluation.shelf_labels import LabelledClip, load_labels
    from intentcam.resources import project_file

    def by_name(folder: str) -> dict[str, LabelledClip]:
        return {c.name: c for c in load_labels(project_file(folder), SHELF_CLIPS)}

    first, adjudicated = by_name("evaluation/shelf"), by_name("evaluation/shelf/adjudicated")
    settled = {"set-a-shoplifting-1", "set-b-shoplifting-10", "set-b-shoplifting-14",
               "set-c-normal-7"}  # fmt: skip
    assert set(adjudicated) == set(first)
    for name, clip in adjudicated.items():
        assert clip.shelves == first[name].shelves and clip.split == first[name].split
        assert (clip.events == first[name].events) == (name not in settled), name
    notes = json.loads(project_file("evaluation/shelf/adjudicated/labels.json").read_text())
    assert all(notes["clips"][name].get("note", "").startswith("settled") for name in settled)
    for folder, found in (("evaluation/shelf/second", 11), ("evaluation/shelf", 8)):
        result = agreement(list(adjudicated.values()), list(by_name(folder).values()))
        reach = result["total"]["test"]["reach"]
        assert (reach["both"], reach["first"]) == (found, 12), folder


def test_the_agreement_bench_compares_two_label_folders_and_stops_on_bad_ones(
    tmp_path: Path,
) -> None:
    import subprocess

    bench = Path(__file__).parents[1] / "hw_bench" / "shelf_agreement.py"

    def run_python(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)

    out = tmp_path / "agreement.json"
    ok = run_python(bench, "--labels-only", "--clips", str(SHELF_CLIPS), "--json", str(out))
    assert ok.returncode == 0, ok.stderr
    assert "test: reach 7 both / 11 second / 11 first" in ok.stdout
    assert json.loads(out.read_text())["agreement"]["total"]["test"]["reach"]["both"] == 7
    (tmp_path / "labels.json").write_text("{not json")
    bad = run_python(bench, "--labels-only", "--second", str(tmp_path))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert str(tmp_path / "labels.json") in bad.stderr


def test_leave_one_out_scores_each_clip_with_thresholds_chosen_without_it() -> None:
    from intentcam.analytics.shelf import Interaction
    from intentcam.evaluation.shelf import ClipPoses, PersonPoses, leave_one_out
    from intentcam.evaluation.shelf_labels import LabelledClip

    shelf = [[0.6, 0.4], [0.9, 0.4], [0.9, 0.8], [0.6, 0.8]]
    script = [AT_CHEST] * 15 + [ON_SHELF] * 9 + [AT_CHEST] * 15  # a reach from 1.0 s to 1.6 s
    person = PersonPoses(
        times=[frame / FPS for frame in range(len(script))],
        poses=[pose(wrist) for wrist in script],
        at=[np.array([True])] * len(script),
        paces=[0.0] * len(script),
    )
    poses = ClipPoses(FPS, len(script), {1: person})
    reach = Interaction("reach", 15, 23)  # labelled in frames
    pairs = [
        (LabelledClip(name, Path(f"{name}.mp4"), {"s": shelf}, "test", {"s": [reach]}), poses)
        for name in ("a", "b", "c")
    ]
    shipped = ShelfSettings.from_config()
    tuned_on: list[list[str]] = []

    def chooser(others: list, base: ShelfSettings) -> tuple[ShelfSettings, float]:
        tuned_on.append([clip.name for clip, _ in others])
        # the fold that holds out "b" chooses an arm test no arm passes
        return replace(base, extension=9.0 if "b" not in tuned_on[-1] else 0.5), 0.0

    result = leave_one_out(pairs, shipped, chooser)
    assert tuned_on == [["b", "c"], ["a", "c"], ["a", "b"]]
    assert [row["settings"]["extension"] for row in result["clips"]] == [0.5, 9.0, 0.5]
    assert [row["reach"] for row in result["clips"]] == [[1, 1, 1], [0, 0, 1], [1, 1, 1]]
    assert result["total"]["reach"] == {
        "matched": 2, "detected": 2, "labelled": 3, "precision": 1.0, "recall": 0.667
    }  # fmt: skip
    assert result["splits"] == {"test": result["total"]}  # every clip here is a test clip

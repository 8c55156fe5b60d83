"""``intentcam eval-shelf``: shelf interactions against hand labels, event by event.

Each clip runs through the configured person detector, the tracker and MoveNet on every tracked
person near the clip's shelf polygon at ``shelf.pose_interval_s``, as the daemon samples a
recording (the poses are computed once and cached in memory), then
through :class:`intentcam.analytics.shelf.ShelfInteractions` with the thresholds under test.
A detected event matches a labelled one of the same kind when their starts are within the
tolerance (0.5 s), each label at most once. Thresholds are chosen on the clips labelled
``tune`` (best mean reach F1 over a small grid) and reported on the ``test`` clips; quiet
stretches (frames inside no labelled event) give the false events per minute. Labels without
tune clips (someone else's held-out set; ``split`` may be left out, meaning ``test``) are
scored with the configured ``[shelf]`` thresholds.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from intentcam.analytics.geometry import Polygon
from intentcam.analytics.shelf import (
    KINDS,
    Interaction,
    ShelfInteractions,
    ShelfSettings,
    ShelfWatch,
)
from intentcam.errors import UserError

TOLERANCE_S = 0.5
#: The grid thresholds are chosen from on the tuning clips.
GRID = {
    "extension": (0.2, 0.3, 0.4, 0.5),
    "margin": (0.0, 0.15, 0.3),
    "hand": (0.0, 0.4),
    "end_s": (0.2, 0.4),
    "min_score": (0.2, 0.3),
}


@dataclass(frozen=True)
class LabelledClip:
    name: str
    path: Path
    shelf: list[list[float]]
    split: str
    events: list[Interaction]


@dataclass
class ClipPoses:
    """Per tracked person near the shelf: (timestamps, poses (N, 17, 3))."""

    fps: float
    frames: int
    people: dict[int, tuple[list[float], list[np.ndarray]]]


def load_labels(folder: Path, clips: Path) -> list[LabelledClip]:
    """``folder/labels.json`` with each clip resolved in ``clips`` (frames become seconds later)."""
    path = folder / "labels.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        found = []
        for name, clip in data["clips"].items():
            events = [Interaction(e["kind"], float(e["start"]), float(e["end"]))
                      for e in clip["events"]]  # fmt: skip
            video = next(iter(sorted(clips.glob(f"{name}.*"))), None)
            if video is None:
                raise UserError(f"{clips}: no video for labelled clip {name!r}", exit_code=2)
            split = clip.get("split", "test")
            if split not in ("tune", "test"):
                raise ValueError(f"clip {name!r}: split must be 'tune' or 'test', not {split!r}")
            found.append(LabelledClip(name, video, clip["shelf"], split, events))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: cannot read the labels ({exc})", exit_code=2) from None
    return found


def extract_poses(
    clip: LabelledClip,
    detect: Callable[[np.ndarray], Any],
    tracker: Any,
    pose: Any,
    near: float,
    interval_s: float,
) -> ClipPoses:
    """Detect, track and estimate poses of the people at the shelf as the daemon does for a
    recording: their box within ``near`` of the shelf's bounds, a pose each at most every
    ``interval_s`` (``shelf.pose_interval_s``)."""
    capture = cv2.VideoCapture(str(clip.path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 15.0
    watch = ShelfWatch({"shelf": clip.shelf}, ShelfSettings.from_config(), near)
    people: dict[int, tuple[list[float], list[np.ndarray]]] = {}
    frame_number = 0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        timestamp = frame_number / fps
        detections = detect(image)
        tracked = tracker.update(detections.boxes, detections.scores, timestamp)
        at_shelf = watch.at_shelf(tracked.boxes)[:, 0]
        for track_id, box, here in zip(tracked.ids.tolist(), tracked.boxes, at_shelf):
            if not here:
                continue
            times, poses = people.setdefault(int(track_id), ([], []))
            if times and timestamp - times[-1] < interval_s:
                continue
            times.append(timestamp)
            poses.append(pose.keypoints(image, box))
        frame_number += 1
    capture.release()
    return ClipPoses(fps, frame_number, people)


def detect_events(
    poses: ClipPoses, shelf: list[list[float]], settings: ShelfSettings
) -> list[Interaction]:
    """The interactions of every person of a clip, by start time."""
    polygon = Polygon(np.asarray(shelf))
    events: list[Interaction] = []
    for times, keypoints in poses.people.values():
        person = ShelfInteractions(polygon, settings)
        for timestamp, points in zip(times, keypoints):
            person.observe(timestamp, points)
        person.finish(times[-1] + 1 / poses.fps)
        events += person.events
    return sorted(events, key=lambda e: e.start)


def match(found: list[Interaction], labelled: list[Interaction], kind: str) -> tuple[int, int, int]:
    """(matched, detected, labelled) of one kind; starts within :data:`TOLERANCE_S`."""
    detections = sorted((e for e in found if e.kind == kind), key=lambda e: e.start)
    labels = [e for e in labelled if e.kind == kind]
    free = list(labels)
    matched = 0
    for event in detections:
        nearest = min(free, key=lambda label: abs(label.start - event.start), default=None)
        if nearest is not None and abs(nearest.start - event.start) <= TOLERANCE_S:
            free.remove(nearest)
            matched += 1
    return matched, len(detections), len(labels)


def quiet_false_per_minute(found: list[Interaction], labelled: list[Interaction], seconds: float,
                           fps: float) -> tuple[int, float]:  # fmt: skip
    """(false events, quiet minutes): events starting in no labelled event (+- tolerance)."""
    busy = [(e.start - TOLERANCE_S, e.end + TOLERANCE_S) for e in labelled]
    false = sum(1 for e in found if not any(a <= e.start <= b for a, b in busy))
    quiet = seconds
    for event in labelled:
        quiet -= event.end - event.start + 1 / fps
    return false, max(quiet, 0.0) / 60


def in_seconds(clip: LabelledClip, fps: float) -> list[Interaction]:
    """Labelled frame numbers as seconds (an event's end frame is included)."""
    return [replace(e, start=e.start / fps, end=(e.end + 1) / fps) for e in clip.events]


def score(
    clips: Iterable[tuple[LabelledClip, ClipPoses]], settings: ShelfSettings
) -> dict[str, Any]:
    """Per clip and overall: matched, detected and labelled per kind, precision, recall, false
    events per quiet minute."""
    rows, totals = [], {kind: [0, 0, 0] for kind in KINDS}
    false_total, quiet_total = 0, 0.0
    for clip, poses in clips:
        labelled = in_seconds(clip, poses.fps)
        found = detect_events(poses, clip.shelf, settings)
        row: dict[str, Any] = {"clip": clip.name, "split": clip.split}
        for kind in KINDS:
            counts = match(found, labelled, kind)
            row[kind] = list(counts)
            totals[kind] = [a + b for a, b in zip(totals[kind], counts)]
        false, quiet = quiet_false_per_minute(found, labelled, poses.frames / poses.fps, poses.fps)
        row["false_in_quiet"], row["quiet_min"] = false, round(quiet, 3)
        false_total, quiet_total = false_total + false, quiet_total + quiet
        rows.append(row)
    summary: dict[str, Any] = {}
    for kind, (matched, detected, labelled_count) in totals.items():
        summary[kind] = {
            "matched": matched,
            "detected": detected,
            "labelled": labelled_count,
            "precision": round(matched / detected, 3) if detected else None,
            "recall": round(matched / labelled_count, 3) if labelled_count else None,
        }
    summary["false_per_quiet_minute"] = round(false_total / quiet_total, 2) if quiet_total else None
    return {"clips": rows, "total": summary}


def f1(result: dict[str, Any], kind: str = "reach") -> float:
    p, r = result["total"][kind]["precision"] or 0.0, result["total"][kind]["recall"] or 0.0
    return 2 * p * r / (p + r) if p + r else 0.0


def choose(tuning: list[tuple[LabelledClip, ClipPoses]]) -> tuple[ShelfSettings, float]:
    """The grid point with the best reach F1 on the tuning clips (ties: the first, so the
    stricter thresholds listed first win)."""
    best, best_f1 = ShelfSettings.from_config(), -1.0
    names = list(GRID)
    for values in itertools.product(*(GRID[name] for name in names)):
        settings = replace(ShelfSettings.from_config(), **dict(zip(names, values)))
        value = f1(score(tuning, settings))
        if value > best_f1:
            best, best_f1 = settings, value
    return best, best_f1


def evaluate(
    clips: list[LabelledClip],
    poses_of: Callable[[LabelledClip], ClipPoses],
    configured: ShelfSettings,
    progress: Callable[[str], None] = lambda name: None,
    *,
    tune: bool = True,
) -> dict[str, Any]:
    """Choose thresholds on the ``tune`` clips (unless ``tune`` is off or there are none: then
    the ``configured`` ones), report on the ``test`` clips (and all)."""
    pairs = []
    for clip in clips:
        progress(clip.name)
        pairs.append((clip, poses_of(clip)))
    tuning = [p for p in pairs if p[0].split == "tune"]
    testing = [p for p in pairs if p[0].split == "test"]
    if not testing:
        raise UserError("no clip is labelled 'test': nothing to report on", exit_code=2)
    if tune and tuning:
        settings, tuned_f1 = choose(tuning)
        chosen = {"clips": [c.name for c, _ in tuning], "reach_f1": round(tuned_f1, 3)}
    else:
        settings, chosen = configured, {"clips": [], "configured": True}
    return {
        "settings": asdict(settings),
        "tolerance_s": TOLERANCE_S,
        "tune": chosen,
        "test": score(testing, settings),
        "all": score(pairs, settings),
    }

"""``intentcam eval-shelf``: shelf interactions against hand labels, event by event.

Each clip runs through the configured person detector, the tracker and MoveNet on every tracked
person near one of the clip's shelf polygons at ``shelf.pose_interval_s``, as the daemon samples
a recording (the poses are computed once and cached in memory), then through
:class:`intentcam.analytics.shelf.ShelfInteractions` (one per person and shelf) with the
thresholds under test. A detected event matches a labelled one of the same kind and shelf when
their starts are within the tolerance (0.5 s), each label at most once. Thresholds are chosen on
the clips labelled ``tune`` (best mean reach F1 over a small grid) and reported on the ``test``
clips; quiet stretches (time inside no labelled event) give the false events per minute. Labels without
tune clips (someone else's held-out set; ``split`` may be left out, meaning ``test``) are
scored with the configured ``[shelf]`` thresholds.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Any

import cv2
import numpy as np

from intentcam.analytics.geometry import Polygon, in_view_units
from intentcam.analytics.shelf import (
    KINDS,
    Interaction,
    Paces,
    ShelfInteractions,
    ShelfSettings,
    ShelfWatch,
)
from intentcam.config import Settings, ShelfConfig
from intentcam.detect import build_detector
from intentcam.errors import UserError
from intentcam.evaluation.shelf_labels import LabelledClip, LabelledEvent, frame_rate
from intentcam.pose.build import build_pose_model
from intentcam.pose.movenet import PoseModel
from intentcam.pose.sampler import MAX_SPARE_MS, PoseSampler
from intentcam.track.bytetrack import ByteTracker, TrackerSettings

TOLERANCE_S = 0.5
#: The grid thresholds are chosen from on the tuning clips.
GRID = {
    "extension": (0.2, 0.3, 0.4, 0.5),
    "margin": (0.0, 0.15, 0.3),
    "hand": (0.0, 0.4),
    "end_s": (0.2, 0.4),
    "min_score": (0.2, 0.3),
}


@dataclass
class PersonPoses:
    """One tracked person's poses: timestamps, (17, 3) keypoints in view units (as
    :class:`ShelfWatch` feeds them to the interactions) and, per pose, which of the clip's shelves
    (in :attr:`LabelledClip.shelves` order) their box was at and their pace then
    (:class:`Paces`)."""

    times: list[float] = field(default_factory=list)
    poses: list[np.ndarray] = field(default_factory=list)
    at: list[np.ndarray] = field(default_factory=list)
    paces: list[float] = field(default_factory=list)


@dataclass
class ClipPoses:
    """The poses of every tracked person who came to a shelf of one clip."""

    fps: float
    frames: int
    people: dict[int, PersonPoses]
    #: The frames' width / height: the shelf polygons are judged in view units, as the poses.
    aspect: float = 1.0


def extract_poses(
    clip: LabelledClip,
    detect: Callable[[np.ndarray], Any],
    new_tracker: Callable[[float], Any],
    pose: PoseModel,
    shelf: ShelfConfig,
    on_frame: Callable[[], None] = lambda: None,
) -> ClipPoses:
    """Detect, track and estimate poses of the people at a shelf as the daemon does for a
    recording: the daemon's :class:`PoseSampler` with ``shelf``'s settings, given the spare time
    a recording has every frame. ``new_tracker(aspect)`` makes the tracker for the clip's width /
    height; ``on_frame`` is called after each frame (a progress bar)."""
    capture = cv2.VideoCapture(str(clip.path))
    fps = frame_rate(capture, clip.fps)
    watch: ShelfWatch | None = None
    sampler = PoseSampler.from_config(pose, shelf)
    tracker = None
    paces: Paces | None = None
    aspect = 1.0
    people: dict[int, PersonPoses] = {}
    frame_number = 0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        if tracker is None or watch is None or paces is None:
            aspect = image.shape[1] / image.shape[0]
            tracker = new_tracker(aspect)
            watch = ShelfWatch(clip.shelves, ShelfSettings.from_config(shelf), shelf.near,
                               aspect=aspect)  # fmt: skip
            paces = Paces(aspect)
        timestamp = frame_number / fps
        detections = detect(image)
        tracked = tracker.update(detections.boxes, detections.scores, timestamp)
        ids = tracked.ids.tolist()
        tokens = [str(i) for i in ids]
        paces.update(tokens, tracked.boxes, timestamp)
        at_shelf = watch.at_shelf(tracked.boxes)
        take = partial(_keep_pose, people, ids, at_shelf, timestamp, aspect, paces)
        sampler.budget.earn(0.0, MAX_SPARE_MS)
        wanted = watch.poses_wanted(tracked.boxes, at_shelf)
        sampler.sample(image, tokens, tracked.boxes, wanted, timestamp, take,
                       paces.walking(tokens, wanted, shelf.walking))  # fmt: skip
        frame_number += 1
        on_frame()
    capture.release()
    return ClipPoses(fps, frame_number, people, aspect)


def pose_extractor(
    settings: Settings, on_frame: Callable[[], None] = lambda: None
) -> Callable[[LabelledClip], ClipPoses]:
    """:func:`extract_poses` with the configured detector (at its low score, as the tracker
    wants), ByteTrack and MoveNet, the models loaded once for every clip; ``on_frame`` after
    each frame of each clip."""
    detector = build_detector(settings)
    pose = build_pose_model(settings, threads=settings.detector.threads)
    low = detector.operating_point.low_score
    tracking = TrackerSettings.from_config(settings.tracker, detector.operating_point)

    def poses_of(clip: LabelledClip) -> ClipPoses:
        return extract_poses(clip, lambda image: detector.detect(image, min_score=low, near=True),
                             lambda aspect: ByteTracker(tracking, aspect=aspect), pose,
                             settings.shelf, on_frame)  # fmt: skip

    return poses_of


def _keep_pose(people: dict[int, PersonPoses], ids: list[int], at_shelf: np.ndarray,
               timestamp: float, aspect: float, paces: Paces, index: int,
               points: np.ndarray) -> None:  # fmt: skip
    person = people.setdefault(int(ids[index]), PersonPoses())
    person.times.append(timestamp)
    person.poses.append(in_view_units(points, aspect))
    person.at.append(at_shelf[index])
    person.paces.append(paces.of(str(ids[index])))


def detect_events(
    poses: ClipPoses, shelves: dict[str, list[list[float]]], settings: ShelfSettings
) -> dict[str, list[Interaction]]:
    """The interactions of every person of a clip at each shelf, by start time; a shelf sees a
    person's poses taken while they were at it, as in the daemon."""
    found: dict[str, list[Interaction]] = {}
    for index, (shelf, points) in enumerate(shelves.items()):
        polygon = Polygon(in_view_units(np.asarray(points), poses.aspect))
        events: list[Interaction] = []
        for person in poses.people.values():
            taken = [
                (t, p, pace)
                for t, p, at, pace in zip(person.times, person.poses, person.at, person.paces)
                if at[index]
            ]
            if not taken:
                continue
            interactions = ShelfInteractions(polygon, settings)
            for timestamp, points_now, pace in taken:
                interactions.observe(timestamp, points_now, pace)
            interactions.finish(taken[-1][0] + 1 / poses.fps)
            events += interactions.events
        found[shelf] = sorted(events, key=lambda e: e.start)
    return found


def pair(found: list[Interaction], labelled: list[Interaction],
         kind: str) -> tuple[list[Interaction], list[Interaction], list[tuple[int, int]]]:  # fmt: skip
    """The detections and labels of one kind, each by start, and which match: (detection index,
    label index) pairs, each detection matched to the nearest free label starting within
    :data:`TOLERANCE_S`, each label at most once."""
    detections = sorted((e for e in found if e.kind == kind), key=lambda e: e.start)
    labels = sorted((e for e in labelled if e.kind == kind), key=lambda e: e.start)
    free = list(range(len(labels)))
    pairs = []
    for index, event in enumerate(detections):
        nearest = min(free, key=lambda j: abs(labels[j].start - event.start), default=None)
        if nearest is not None and abs(labels[nearest].start - event.start) <= TOLERANCE_S:
            free.remove(nearest)
            pairs.append((index, nearest))
    return detections, labels, pairs


def event_rows(found: list[Interaction], labelled: list[Interaction],
               shelf: str) -> list[dict[str, Any]]:  # fmt: skip
    """Every labelled and detected event of one shelf, in seconds, each saying whether it was
    matched (for the JSON and the timeline picture)."""
    rows = []
    for kind in KINDS:
        detections, labels, pairs = pair(found, labelled, kind)
        matched = {"found": {i for i, _ in pairs}, "label": {j for _, j in pairs}}
        for source, events in (("label", labels), ("found", detections)):
            rows += [{"source": source, "kind": kind, "shelf": shelf, "start": round(e.start, 3),
                      "end": round(e.end, 3), "matched": i in matched[source], **whose(e)}
                     for i, e in enumerate(events)]  # fmt: skip
    return rows


def whose(event: Interaction) -> dict[str, str | int]:
    """``{"person": ...}`` for a label the labeller made per person; nothing for a detection,
    whose track is anonymous and never named in what eval-shelf reports."""
    if isinstance(event, LabelledEvent) and event.person is not None:
        return {"person": event.person}
    return {}


def counts_by_kind(events: list[dict[str, Any]]) -> dict[str, list[int]]:
    """:func:`event_counts` of every kind, as a clip's row of :func:`score` carries them."""
    return {kind: event_counts(events, kind) for kind in KINDS}


def event_counts(events: list[dict[str, Any]], kind: str) -> list[int]:
    """[matched, detected, labelled] of one kind among :func:`event_rows`."""
    found = [e for e in events if e["kind"] == kind and e["source"] == "found"]
    labelled = sum(1 for e in events if e["kind"] == kind and e["source"] == "label")
    return [sum(e["matched"] for e in found), len(found), labelled]


def quiet_false_per_minute(found: list[Interaction], labelled: list[Interaction],
                           seconds: float) -> tuple[int, float]:  # fmt: skip
    """(false events, quiet minutes): events starting in no labelled event (+- tolerance); the
    quiet time is the clip's time no labelled event covers."""
    busy = [(e.start - TOLERANCE_S, e.end + TOLERANCE_S) for e in labelled]
    false = sum(1 for e in found if not any(a <= e.start <= b for a, b in busy))
    covered, reached = 0.0, 0.0  # the union of the labelled intervals, swept by start
    for event in sorted(labelled, key=lambda e: e.start):
        start, end = max(event.start, reached), min(event.end, seconds)
        if end > start:
            covered += end - start
        reached = max(reached, end)
    return false, max(seconds - covered, 0.0) / 60


def in_seconds(clip: LabelledClip, fps: float) -> dict[str, list[Interaction]]:
    """Labelled frame numbers as seconds (an event's end frame is included), by shelf."""
    return {shelf: [replace(e, start=e.start / fps, end=(e.end + 1) / fps) for e in events]
            for shelf, events in clip.events.items()}  # fmt: skip


def share(part: int, whole: int) -> float | None:
    """``part / whole`` to three places; ``None`` where there is no whole to share."""
    return round(part / whole, 3) if whole else None


def score(
    clips: Iterable[tuple[LabelledClip, ClipPoses]], settings: ShelfSettings
) -> dict[str, Any]:
    """Per clip and overall: matched, detected and labelled per kind, precision, recall, false
    events per quiet minute."""
    scored = [_score_clip(clip, poses, settings) for clip, poses in clips]
    return pooled(scored)


def _score_clip(
    clip: LabelledClip, poses: ClipPoses, settings: ShelfSettings
) -> tuple[dict[str, Any], float]:
    """One clip's row of a :func:`score` result, and its quiet minutes unrounded (the row's
    ``quiet_min`` is rounded for reading; the pooled rate is taken from the exact ones)."""
    labelled = in_seconds(clip, poses.fps)
    found = detect_events(poses, clip.shelves, settings)
    seconds = poses.frames / poses.fps
    events = [
        event for shelf in clip.shelves for event in
        event_rows(found[shelf], labelled[shelf], shelf)
    ]  # fmt: skip
    row: dict[str, Any] = {"clip": clip.name, "split": clip.split, **counts_by_kind(events)}
    false, quiet = quiet_false_per_minute(
        [e for events in found.values() for e in events],
        [e for events in labelled.values() for e in events],
        seconds,
    )
    row["false_in_quiet"], row["quiet_min"] = false, round(quiet, 3)
    row["seconds"], row["events"] = round(seconds, 3), events
    return row, quiet


def of_split(
    scored: list[tuple[dict[str, Any], float]], split: str
) -> list[tuple[dict[str, Any], float]]:
    """The scored clips (:func:`_score_clip` results) labelled ``split`` (``tune``, ``test``)."""
    return [item for item in scored if item[0]["split"] == split]


def pooled(scored: list[tuple[dict[str, Any], float]]) -> dict[str, Any]:
    """The clips' rows, and their ``total``: per kind the summed [matched, detected, labelled]
    with precision and recall, and the false events per quiet minute over all of them."""
    rows = [row for row, _ in scored]
    quiet_min = sum(quiet for _, quiet in scored)
    false = sum(row["false_in_quiet"] for row in rows)
    summary: dict[str, Any] = {}
    for kind in KINDS:
        matched, detected, labelled_count = (sum(row[kind][i] for row in rows) for i in range(3))
        summary[kind] = {
            "matched": matched,
            "detected": detected,
            "labelled": labelled_count,
            "precision": share(matched, detected),
            "recall": share(matched, labelled_count),
        }
    summary["false_per_quiet_minute"] = round(false / quiet_min, 2) if quiet_min else None
    return {"clips": rows, "total": summary}


def matched_detected_labelled(result: dict[str, Any], kind: str = "reach") -> list[int]:
    """[matched, detected, labelled] of one kind in a :func:`score` result's totals."""
    total = result["total"][kind]
    return [total["matched"], total["detected"], total["labelled"]]


def f1(result: dict[str, Any], kind: str = "reach") -> float:
    p, r = result["total"][kind]["precision"] or 0.0, result["total"][kind]["recall"] or 0.0
    return 2 * p * r / (p + r) if p + r else 0.0


def choose(
    tuning: list[tuple[LabelledClip, ClipPoses]], base: ShelfSettings
) -> tuple[ShelfSettings, float]:
    """The grid point with the best reach F1 on the tuning clips (ties: the first, so the
    stricter thresholds listed first win); the thresholds the grid leaves alone are ``base``'s."""
    best, best_f1 = base, -1.0
    names = list(GRID)
    for values in itertools.product(*(GRID[name] for name in names)):
        settings = replace(base, **dict(zip(names, values)))
        value = f1(score(tuning, settings))
        if value > best_f1:
            best, best_f1 = settings, value
    return best, best_f1


def leave_one_out(
    pairs: list[tuple[LabelledClip, ClipPoses]],
    base: ShelfSettings,
    chooser: Callable[
        [list[tuple[LabelledClip, ClipPoses]], ShelfSettings], tuple[ShelfSettings, float]
    ] = choose,
) -> dict[str, Any]:
    """Every clip scored with thresholds chosen (``chooser``, the grid by default) on all the
    *other* clips: each clip held out once, so every label counts as held out, which a fixed
    tune/test split of a dozen short clips cannot do. Per clip its result and the thresholds
    chosen without it; ``total`` pools the held-out counts as :func:`score` does, and
    ``splits`` the same per split the labels name (``tune``, ``test``)."""
    scored = []
    for index, (clip, poses) in enumerate(pairs):
        chosen, _ = chooser(pairs[:index] + pairs[index + 1 :], base)
        row, quiet = _score_clip(clip, poses, chosen)
        row["settings"] = {name: getattr(chosen, name) for name in GRID}
        scored.append((row, quiet))
    result = pooled(scored)
    splits = sorted({row["split"] for row, _ in scored})
    result["splits"] = {split: pooled(of_split(scored, split))["total"] for split in splits}
    return result


def evaluate(
    clips: list[LabelledClip],
    poses_of: Callable[[LabelledClip], ClipPoses],
    configured: ShelfSettings,
    progress: Callable[[str], None] = lambda name: None,
    *,
    tune: bool = True,
) -> dict[str, Any]:
    """Choose thresholds on the ``tune`` clips (unless ``tune`` is off or there are none: then
    the ``configured`` ones; those outside :data:`GRID` are always the ``configured`` ones),
    report on the ``test`` clips (and all)."""
    if not any(clip.split == "test" for clip in clips):  # before minutes of pose extraction
        raise UserError("no clip is labelled 'test': nothing to report on", exit_code=2)
    pairs = []
    for clip in clips:
        progress(clip.name)
        pairs.append((clip, poses_of(clip)))
    tuning = [p for p in pairs if p[0].split == "tune"]
    if tune and tuning:
        settings, tuned_f1 = choose(tuning, configured)
        chosen = {"clips": [c.name for c, _ in tuning], "reach_f1": round(tuned_f1, 3)}
    else:
        settings, chosen = configured, {"clips": [], "configured": True}
    scored = [_score_clip(clip, poses, settings) for clip, poses in pairs]  # each clip once
    return {
        "settings": asdict(settings),
        "tolerance_s": TOLERANCE_S,
        "tune": chosen,
        "test": pooled(of_split(scored, "test")),
        "all": pooled(scored),
    }

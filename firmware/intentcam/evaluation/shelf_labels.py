"""``labels.json`` of ``intentcam eval-shelf``: hand labels of shelf clips, checked field by field.

The format (``evaluation/shelf/README.md`` has the protocol)::

    {"coordinates": "normalised",            # or "pixels" (of the clip's frames)
     "clips": {"NAME": {                     # the video is CLIPS/NAME.* unless "video" is given
        "shelf": [[x, y], ...],              # or "shelves": {"ID": [[x, y], ...], ...}
        "split": "test",                     # or "tune": thresholds may be chosen on it
        "fps": 25,                           # only where the container states a wrong rate
        "events": [{"kind": "reach", "start": 12, "end": 20},        # frames, both included
                   {"kind": "inspect", "start_s": 1.4, "end_s": 3.0,   # or seconds
                    "person": 2}]                    # optional, whose: not scored
     }}}

Someone else's labels are the check that matters, so every mistake a labeller can make (a
polygon in pixels, an event kind we do not detect, an interval that ends before it starts, frames
counted at another frame rate) stops the run with one line naming the clip and field: silently
scoring such labels would report a recall of nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from intentcam.analytics.shelf import Interaction
from intentcam.capture.files import container_fps
from intentcam.config import Point, check_polygon, describe_validation_error
from intentcam.errors import ConfigError, UserError

UNKNOWN_FIELD = "unknown field (check the spelling against evaluation/shelf/README.md)"
#: eval-shelf's frame rate for a clip whose container states none (the shelf clips' rate).
FALLBACK_FPS = 15.0
#: The id of a clip's shelf where its labels give one polygon (``"shelf"``) and no ``shelves``.
SOLE_SHELF = "shelf"


@dataclass(frozen=True)
class LabelledEvent(Interaction):
    """A labelled interval, with whose it is where the labeller said (``person``: their own
    number or name for the person, echoed in ``--json``, never scored)."""

    person: str | int | None = None


@dataclass(frozen=True)
class LabelledClip:
    """A clip's shelf polygons by id (normalised), and its labelled events by shelf (frame
    numbers, the last one included); ``frames`` as its container states (0: unknown); ``fps``
    the labels' frame rate where the container's is wrong (``None``: the container's)."""

    name: str
    path: Path
    shelves: dict[str, list[list[float]]]
    split: str
    events: dict[str, list[LabelledEvent]]
    frames: int = 0
    fps: float | None = None


@dataclass(frozen=True)
class VideoFormat:
    """What a clip's container says of it (``frames`` is 0 where it does not say)."""

    fps: float
    width: int
    height: int
    frames: int


def frame_rate(capture: cv2.VideoCapture, labelled: float | None = None) -> float:
    """An opened clip's frame rate: the ``labelled`` one (:attr:`LabelledClip.fps`) where the
    labels give it, else its container's, else :data:`FALLBACK_FPS`."""
    return labelled or container_fps(capture) or FALLBACK_FPS


def probe_video(path: Path) -> VideoFormat:
    """Open ``path`` and decode its first frame; a one-line :class:`UserError` if it cannot be."""
    capture = cv2.VideoCapture(str(path))
    try:
        ok, image = capture.read() if capture.isOpened() else (False, None)
        if not ok or image is None:
            raise UserError(f"{path}: no decodable video frames (corrupt or not a video)")
        fps = frame_rate(capture)
        frames = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
    finally:
        capture.release()
    return VideoFormat(fps, image.shape[1], image.shape[0], frames)


class EventLabel(BaseModel):
    """One labelled interval: in frame numbers (``start``, ``end``, both included) or in
    seconds from the clip's start (``start_s``, ``end_s``)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["reach", "inspect", "put_back"]
    #: Which of the clip's ``shelves``; may be left out where the clip has one shelf.
    shelf: str | None = None
    start: int | None = Field(default=None, ge=0)
    end: int | None = Field(default=None, ge=0)
    start_s: float | None = Field(default=None, ge=0)
    end_s: float | None = Field(default=None, ge=0)
    #: Whose event (the labeller's own number or letter for the person), where labelled per
    #: person: kept for the reader (``--json`` echoes it), not scored. The detector's tracks are
    #: anonymous, so there is no name to compare it with; two people reaching at once are two
    #: labels, each matched to one detection by its start.
    person: str | int | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _one_interval(self) -> EventLabel:
        bounds = (self.start, self.end, self.start_s, self.end_s)
        given = [pair for pair in (bounds[:2], bounds[2:]) if None not in pair]
        if len(given) != 1 or sum(bound is not None for bound in bounds) != 2:
            raise ValueError(
                "give the interval as start and end (frame numbers) or as start_s and end_s "
                "(seconds), one pair"
            )
        first, last = given[0]
        if last < first:  # type: ignore[operator]  # neither is None: checked above
            raise ValueError(f"ends ({last}) before it starts ({first})")
        return self

    def frames(self, fps: float) -> tuple[float, float]:
        """First and last frame (the last included, as in frame labels)."""
        if self.start is not None and self.end is not None:
            return float(self.start), float(self.end)
        assert self.start_s is not None and self.end_s is not None
        return self.start_s * fps, max(self.end_s * fps - 1, self.start_s * fps)


class ClipLabel(BaseModel):
    """One clip: its shelf polygon(s), split and events."""

    model_config = ConfigDict(extra="forbid")
    shelf: list[Point] | None = None
    shelves: dict[str, list[Point]] | None = None
    split: Literal["tune", "test"] = "test"
    #: The video, relative to the clips folder, where it is not ``NAME.*`` there.
    video: str | None = None
    #: The clip's frame rate where its container states a wrong one (its frames' own
    #: timestamps, which the daemon goes by, say otherwise): frames are timed at this rate.
    fps: float | None = Field(default=None, gt=0, le=1000)
    events: list[EventLabel] = Field(default_factory=list)
    note: str | None = None

    @model_validator(mode="after")
    def _shelves(self) -> ClipLabel:
        if (self.shelf is None) == (self.shelves is None):
            raise ValueError("give one 'shelf' polygon or several as 'shelves' by id")
        if self.shelves is not None and not self.shelves:
            raise ValueError("'shelves' is empty")
        names = list(self.polygons())
        for index, event in enumerate(self.events):
            if event.shelf is None and len(names) > 1:
                raise ValueError(f"events.{index}: name its shelf, one of {names}")
            if event.shelf is not None and event.shelf not in names:
                raise ValueError(f"events.{index}: shelf {event.shelf!r} is not one of {names}")
        return self

    def polygons(self) -> dict[str, list[Point]]:
        return self.shelves if self.shelves is not None else {SOLE_SHELF: self.shelf or []}


class LabelFile(BaseModel):
    """The whole ``labels.json``."""

    model_config = ConfigDict(extra="forbid")
    protocol: str | None = None
    labeller: str | None = None
    #: How polygons are given: fractions of the frame's width and height, or pixels.
    coordinates: Literal["normalised", "pixels"] = "normalised"
    clips: dict[str, ClipLabel] = Field(min_length=1)


def load_labels(folder: Path, clips: Path) -> list[LabelledClip]:
    """``folder/labels.json`` with each clip's video found in ``clips`` and opened (its frame
    rate turns seconds into frames, its size pixels into fractions)."""
    path = folder / "labels.json"
    try:
        data = LabelFile.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise UserError(f"{path}: cannot read the labels ({exc.strerror})", exit_code=2) from None
    except ValueError as exc:  # JSON syntax, or a field (pydantic's error is a ValueError)
        lines = (
            describe_validation_error(exc, UNKNOWN_FIELD)
            if isinstance(exc, ValidationError)
            else [f"not JSON ({exc})"]
        )
        raise ConfigError([f"{path}: {line}" for line in lines]) from None
    return [_clip(path, name, clip, clips, data.coordinates) for name, clip in data.clips.items()]


def _clip(path: Path, name: str, label: ClipLabel, clips: Path, coordinates: str) -> LabelledClip:
    where = f"{path}: clips.{name}"
    video = (
        clips / label.video
        if label.video is not None
        else next(iter(sorted(clips.glob(f"{name}.*"))), None)
    )
    if video is None or not video.is_file():
        raise UserError(
            f"{video or clips}: no video for clip {name!r} labelled in {path}"
            " (put the clips and their labels.json in one folder, or name it with --labels)",
            exit_code=2,
        )
    found = probe_video(video)
    scale = (found.width, found.height) if coordinates == "pixels" else (1.0, 1.0)
    shelves: dict[str, list[list[float]]] = {}
    for shelf, points in label.polygons().items():
        field = "shelf" if label.shelf is not None else f"shelves.{shelf}"
        normalised: list[Point] = [(x / scale[0], y / scale[1]) for x, y in points]
        problem = check_polygon(normalised)
        outside = [p for p, q in zip(points, normalised) if not (0 <= q[0] <= 1 and 0 <= q[1] <= 1)]
        if outside and coordinates == "pixels":
            problem = f"point {outside[0]} is outside the {found.width}x{found.height} frame"
        elif problem and outside:
            problem += ' (for pixel coordinates, set "coordinates": "pixels" in labels.json)'
        if problem:
            raise ConfigError([f"{where}.{field}: {problem}"])
        shelves[shelf] = [list(point) for point in normalised]
    events: dict[str, list[LabelledEvent]] = {shelf: [] for shelf in shelves}
    fps = label.fps or found.fps
    for index, event in enumerate(label.events):
        first, last = event.frames(fps)
        if found.frames and first >= found.frames:
            raise ConfigError([
                f"{where}.events.{index}: starts at frame {first:g}, after the clip's last "
                f"({found.frames - 1} at {fps:g} fps)"
            ])  # fmt: skip
        labelled = LabelledEvent(event.kind, first, last, event.person)
        events[event.shelf or next(iter(shelves))].append(labelled)
    return LabelledClip(name, video, shelves, label.split, events, found.frames, label.fps)

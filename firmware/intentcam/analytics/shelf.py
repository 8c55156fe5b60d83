"""Interactions at a shelf from a person's wrists: reaches, inspects and put-backs.

Fed one pose per observation (17 COCO keypoints, normalised image coordinates), it follows both
wrists against the shelf polygon (the shelf face or table top, drawn by the installer):

- a hand is **on the shelf** when a confident hand point lies inside the polygon (or within
  ``margin`` image heights of it) and the arm is extended. The hand point is the wrist carried on
  along the forearm by ``hand`` forearm lengths (the hand, not the wrist, touches the products,
  and from an elevated camera the products often hide it); the arm is
  extended: shoulder-to-wrist distance over torso length at least ``extension`` (a hand held in
  front of the chest, over the shelf's edge in the picture, is not a reach);
- a **reach** starts once a hand has been on the shelf for ``start_s`` and ends once no hand has
  been on it for ``end_s`` (hysteresis both ways, in seconds);
- an **inspect** is the time after a reach while no hand is on the shelf, once it has lasted
  ``inspect_s`` with a wrist carried at least ``away`` (image heights) off the shelf: the person
  holds something they took;
- a reach that starts while inspecting is a **put back** (it may also be a second pick: the names
  say what the hands did, never what was bought).

Keypoints are used where they are computed and forgotten: only the events leave.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from intentcam.analytics.geometry import Polygon

LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_ELBOW, RIGHT_ELBOW, LEFT_WRIST, RIGHT_WRIST = 5, 6, 7, 8, 9, 10
LEFT_HIP, RIGHT_HIP = 11, 12


@dataclass(frozen=True)
class ShelfSettings:
    """Thresholds of :class:`ShelfInteractions`; each one's effect is in the module docstring."""

    #: Keypoints below this MoveNet score are not used.
    min_score: float = 0.25
    #: Shoulder-to-wrist over shoulder-to-hip distance for an arm to count as extended.
    extension: float = 0.55
    #: How far outside the polygon (image heights) a hand point still counts as on the shelf.
    margin: float = 0.0
    #: The hand point: the wrist plus this many forearm lengths along elbow -> wrist.
    hand: float = 0.0
    start_s: float = 0.1
    end_s: float = 0.3
    inspect_s: float = 0.7
    away: float = 0.03


@dataclass(frozen=True)
class Interaction:
    """One event: ``kind`` ``reach``, ``inspect`` or ``put_back``, from ``start`` to ``end``
    (seconds of the caller's clock)."""

    kind: str
    start: float
    end: float


def hands_on_shelf(pose: np.ndarray, shelf: Polygon, settings: ShelfSettings) -> tuple[bool, float]:
    """Whether a hand is on the shelf, and how far (image heights) the farthest confident wrist is
    from it (0 when none is confident)."""
    scores = pose[:, 2]
    on, farthest = False, 0.0
    torso = _torso(pose, settings.min_score)
    for wrist, elbow, shoulder in (
        (LEFT_WRIST, LEFT_ELBOW, LEFT_SHOULDER),
        (RIGHT_WRIST, RIGHT_ELBOW, RIGHT_SHOULDER),
    ):
        if scores[wrist] < settings.min_score:
            continue
        point = pose[wrist : wrist + 1, :2]
        if settings.hand and scores[elbow] >= settings.min_score:
            point = point + settings.hand * (pose[wrist, :2] - pose[elbow, :2])
        distance = float(shelf.distance(point)[0])
        farthest = max(farthest, distance)
        if distance > settings.margin:
            continue
        if scores[shoulder] < settings.min_score or torso is None:
            on = True  # no shoulder to judge by: a wrist on the shelf is a hand on it
            continue
        reach = float(np.linalg.norm(pose[wrist, :2] - pose[shoulder, :2]))
        on = on or reach / torso >= settings.extension
    return on, farthest


def _torso(pose: np.ndarray, min_score: float) -> float | None:
    """Shoulder-centre to hip-centre distance, from whichever sides are confident."""
    shoulders = [pose[i, :2] for i in (LEFT_SHOULDER, RIGHT_SHOULDER) if pose[i, 2] >= min_score]
    hips = [pose[i, :2] for i in (LEFT_HIP, RIGHT_HIP) if pose[i, 2] >= min_score]
    if not shoulders or not hips:
        return None
    length = float(np.linalg.norm(np.mean(shoulders, axis=0) - np.mean(hips, axis=0)))
    return length if length > 1e-6 else None


@dataclass
class ShelfInteractions:
    """One person at one shelf; see the module docstring."""

    shelf: Polygon
    settings: ShelfSettings = field(default_factory=ShelfSettings)
    events: list[Interaction] = field(default_factory=list)
    _on_since: float | None = None
    _off_since: float | None = None
    _reach_start: float | None = None
    _last_reach_end: float | None = None
    _carried_away: bool = False
    _inspecting: bool = False
    #: The open reach began while inspecting: it is also a put back.
    _put_back: bool = False

    def observe(self, timestamp: float, pose: np.ndarray) -> list[Interaction]:
        """One pose at ``timestamp``; returns the events that ended with it."""
        on, farthest = hands_on_shelf(pose, self.shelf, self.settings)
        ended: list[Interaction] = []
        s = self.settings
        if on:
            self._off_since = None
            if self._on_since is None:
                self._on_since = timestamp
            if self._reach_start is None and timestamp - self._on_since >= s.start_s:
                self._reach_start = self._on_since
                if self._inspecting and self._last_reach_end is not None:
                    ended.append(Interaction("inspect", self._last_reach_end, self._on_since))
                    self._put_back = True
                else:
                    self._put_back = False
                self._inspecting = False
        else:
            self._on_since = None
            if self._off_since is None:
                self._off_since = timestamp
            if self._reach_start is not None and timestamp - self._off_since >= s.end_s:
                ended += self._end_reach(self._off_since)
            elif self._reach_start is None and self._last_reach_end is not None:
                self._carried_away = self._carried_away or farthest >= s.away
                lasted = timestamp - self._last_reach_end
                self._inspecting = self._inspecting or (
                    self._carried_away and lasted >= s.inspect_s
                )
        self.events += ended
        return ended

    def _end_reach(self, end: float) -> list[Interaction]:
        assert self._reach_start is not None
        ended = [Interaction("reach", self._reach_start, end)]
        if self._put_back:
            ended.append(Interaction("put_back", self._reach_start, end))
        self._reach_start, self._last_reach_end = None, end
        self._carried_away, self._inspecting = False, False
        return ended

    def finish(self, timestamp: float) -> list[Interaction]:
        """The person left (or the clip ended): close what is open."""
        ended: list[Interaction] = []
        if self._reach_start is not None:
            ended += self._end_reach(timestamp)
        elif self._inspecting and self._last_reach_end is not None:
            ended.append(Interaction("inspect", self._last_reach_end, timestamp))
            self._inspecting = False
        self.events += ended
        return ended

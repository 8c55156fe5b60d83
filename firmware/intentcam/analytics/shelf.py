"""Interactions at a shelf from a person's wrists: reaches, inspects and put-backs.

Fed one pose per observation (17 COCO keypoints in view units: normalised image coordinates with
x multiplied by the frame's aspect ratio, as the rest of the analytics, so that a torso length or
an ``away`` measures the same sideways as up and down, on a 4:3 camera as on a 16:9 one), it
follows both wrists against the shelf polygon (the shelf face or table top, drawn by the
installer, in the same units):

- a hand is **on the shelf** when a confident hand point lies inside the polygon (or within
  ``margin`` torso lengths of it) and the arm is held out. The hand point is the wrist carried on
  along the forearm by ``hand`` forearm lengths (the hand, not the wrist, touches the products,
  and from an elevated camera the products often hide it); the arm is held out when the wrist is
  at least ``extension`` torso lengths from the torso (the segment from the shoulders' centre to
  the hips'): a hand held in front of the chest or an arm hanging by the shelf's edge, over the
  shelf in the picture, is not a reach;
- a **reach** starts once a hand has been on the shelf for ``start_s`` and ends once no hand has
  been on it for ``end_s`` (hysteresis both ways, in seconds); a hand last seen on the shelf and
  then lost (no confident wrist: products and shelving hide hands) is given ``lost_s`` instead,
  since losing sight of a hand is not seeing it come out;
- an **inspect** is the time after a reach while no hand is on the shelf, once it has lasted
  ``inspect_s`` with a wrist carried at least ``away`` (frame heights) off the shelf: the person
  holds something they took;
- a reach that starts while inspecting is a **put back** (it may also be a second pick: the names
  say what the hands did, never what was bought);
- a person **walking** (their box moving faster than ``walking`` body heights per second,
  :class:`Paces`) is passing by, not at the shelf: their hands are not on it and they do not
  inspect. From an elevated camera a walker overlaps the shelf in the picture, arms swinging.

:class:`ShelfWatch` runs one :class:`ShelfInteractions` per person and shelf zone of a camera
view: who is at which shelf (their box within ``near`` of it), the poses they are fed, and the
events of the stays that end. It takes boxes, polygons and poses in normalised image coordinates
and turns them into view units itself.

Keypoints are used where they are computed and forgotten: only the events leave.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from intentcam.analytics.geometry import (
    Polygon,
    boxes_in_view_units,
    distance_to_segments,
    in_view_units,
)
from intentcam.config import ShelfConfig

LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_ELBOW, RIGHT_ELBOW, LEFT_WRIST, RIGHT_WRIST = 5, 6, 7, 8, 9, 10
LEFT_HIP, RIGHT_HIP = 11, 12
#: A person's pace is their box's displacement over this many seconds: long enough to span a
#: stride (a box jitters frame to frame, and widens as an arm goes out), short enough that a
#: shopper who stops at a shelf counts as standing within it.
PACE_WINDOW_S = 0.5
#: With less history than this (a track just begun, or just back), the pace is unknown and taken
#: as standing: a shopper already at the shelf when the camera starts is judged from the start.
PACE_MIN_SPAN_S = 0.2


def is_walking(pace: float, walking: float) -> bool:
    """Whether a person at ``pace`` (:class:`Paces`) is walking past: over ``walking`` body
    heights per second, a gate that 0 turns off."""
    return bool(walking) and pace > walking


@dataclass(frozen=True)
class ShelfSettings:
    """Thresholds of :class:`ShelfInteractions`; each one's effect is in ``[shelf]``
    (:class:`intentcam.config.ShelfConfig`), which holds their defaults."""

    min_score: float
    extension: float
    margin: float
    hand: float
    start_s: float
    end_s: float
    lost_s: float
    inspect_s: float
    away: float
    walking: float

    @classmethod
    def from_config(cls, config: ShelfConfig | None = None) -> ShelfSettings:
        """The thresholds of ``[shelf]`` (its defaults when ``config`` is ``None``)."""
        config = config or ShelfConfig()
        return cls(**{name: getattr(config, name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Interaction:
    """One event: ``kind`` ``reach``, ``inspect`` or ``put_back``, from ``start`` to ``end``
    (seconds of the caller's clock)."""

    kind: str
    start: float
    end: float


def hands_on_shelf(pose: np.ndarray, shelf: Polygon, settings: ShelfSettings) -> tuple[bool, float]:
    """Whether a hand is on the shelf, and how far (frame heights) the farthest confident wrist is
    from it (0 when none is confident)."""
    scores = pose[:, 2]
    on, farthest = False, 0.0
    body = _body_axis(pose, settings.min_score)
    for wrist, elbow in ((LEFT_WRIST, LEFT_ELBOW), (RIGHT_WRIST, RIGHT_ELBOW)):
        if scores[wrist] < settings.min_score:
            continue
        point = pose[wrist : wrist + 1, :2]
        if settings.hand and scores[elbow] >= settings.min_score:
            point = point + settings.hand * (pose[wrist, :2] - pose[elbow, :2])
        distance = float(shelf.distance(point)[0])
        farthest = max(farthest, distance)
        if body is None:
            on = on or distance <= 0.0  # no torso to judge by: only a wrist inside counts
            continue
        top, down, torso = body
        if distance > settings.margin * torso:
            continue
        # How far the wrist is held out from the torso (the segment shoulders -> hips): an arm
        # hanging by the table's edge or a hand in front of the chest stays near it; a reach
        # goes out sideways, or up above the shoulders (a high shelf, or any shelf seen from
        # an elevated camera behind the shopper), or down below the hips.
        wrist_at = pose[wrist : wrist + 1, :2]
        out = float(distance_to_segments(wrist_at, top[None], (top + torso * down)[None])[0, 0])
        on = on or out / torso >= settings.extension
    return on, farthest


def _body_axis(pose: np.ndarray, min_score: float) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(shoulder centre, unit vector to the hip centre, torso length) from whichever sides are
    confident; None without a shoulder and a hip."""
    shoulders = [pose[i, :2] for i in (LEFT_SHOULDER, RIGHT_SHOULDER) if pose[i, 2] >= min_score]
    hips = [pose[i, :2] for i in (LEFT_HIP, RIGHT_HIP) if pose[i, 2] >= min_score]
    if not shoulders or not hips:
        return None
    top = np.mean(shoulders, axis=0)
    down = np.mean(hips, axis=0) - top
    length = float(np.linalg.norm(down))
    return (top, down / length, length) if length > 1e-6 else None


@dataclass
class ShelfInteractions:
    """One person at one shelf; see the module docstring."""

    shelf: Polygon
    settings: ShelfSettings = field(default_factory=ShelfSettings.from_config)
    events: list[Interaction] = field(default_factory=list)
    _on_since: float | None = None
    _off_since: float | None = None
    _reach_start: float | None = None
    _last_reach_end: float | None = None
    _carried_away: bool = False
    _inspecting: bool = False
    #: No wrist has been confident since the hand was last seen on the shelf.
    _lost_on_shelf: bool = False
    #: The open reach began while inspecting: it is also a put back.
    _put_back: bool = False

    def observe(self, timestamp: float, pose: np.ndarray, pace: float = 0.0) -> list[Interaction]:
        """One pose at ``timestamp`` of a person moving at ``pace`` (body heights per second,
        :class:`Paces`); returns the events that ended with it."""
        s = self.settings
        walking = is_walking(pace, s.walking)
        on, farthest = hands_on_shelf(pose, self.shelf, s)
        on = on and not walking
        ended: list[Interaction] = []
        seen = bool((pose[[LEFT_WRIST, RIGHT_WRIST], 2] >= s.min_score).any())
        self._lost_on_shelf = not seen and (self._lost_on_shelf or self._on_since is not None)
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
            wait = max(s.end_s, s.lost_s) if self._lost_on_shelf else s.end_s
            if self._reach_start is not None and timestamp - self._off_since >= wait:
                ended += self._end_reach(self._off_since)
            elif self._reach_start is None and self._last_reach_end is not None:
                self._carried_away = self._carried_away or farthest >= s.away
                lasted = timestamp - self._last_reach_end
                self._inspecting = self._inspecting or (
                    self._carried_away and lasted >= s.inspect_s and not walking
                )
        self.events += ended
        return ended

    @property
    def reaches_begun(self) -> int:
        """Reaches so far, the one under way included: a hand that has been in the shelf for
        a while is a reach now, not only once it comes out."""
        return sum(e.kind == "reach" for e in self.events) + (self._reach_start is not None)

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


#: The interaction kinds, in the order they are reported.
KINDS = ("reach", "inspect", "put_back")


@dataclass(frozen=True)
class ZoneInteraction:
    """An interaction of the person ``token`` at the shelf zone ``zone``."""

    zone: str
    token: str
    event: Interaction


@dataclass
class _Stay:
    """One person at one shelf: their hands, since when they are there, when last seen there."""

    hands: ShelfInteractions
    since: float
    seen: float


@dataclass(frozen=True)
class ShelfStay:
    """Someone at a shelf zone now: since when, and how many reaches there so far (the one
    under way included)."""

    zone: str
    token: str
    since: float
    reaches: int


class Paces:
    """How fast each person walks, in body heights per second: their box's displacement (view
    units) over the last :data:`PACE_WINDOW_S`, over the box's height. Against the person's own
    height a pace reads the same near the camera as far from it; over half a second a jittering
    box does not add up to walking. The box moves only as far as *both* its edges moved the same
    way (per axis, the lesser of the two): an arm held out or raised moves one edge of a
    standing shopper's box, walking carries both. (Not the tracker's Kalman velocity: in a
    track's first frames it jumps with the first detections, to 0.35 body heights a second for
    a shopper standing at the store aisle's table.)"""

    def __init__(self, aspect: float = 1.0) -> None:
        self.aspect = aspect
        #: Per token, the recent (timestamp, x1, y1, x2, y2) boxes in view units, as Python
        #: floats: asked for everyone at a shelf every frame, a pace must cost microseconds,
        #: which numpy's per-call overhead on a few numbers does not.
        self._samples: dict[str, deque[tuple[float, float, float, float, float]]] = {}

    def update(self, tokens: list[str], boxes: np.ndarray, timestamp: float) -> None:
        """One frame's people (normalised ``x1, y1, x2, y2`` boxes); those unseen for a window
        are forgotten."""
        view = boxes_in_view_units(boxes, self.aspect)
        for token, (x1, y1, x2, y2) in zip(tokens, view.tolist()):
            samples = self._samples.setdefault(token, deque())
            samples.append((timestamp, x1, y1, x2, y2))
            while timestamp - samples[0][0] > PACE_WINDOW_S:
                samples.popleft()
        for token in [
            t for t, kept in self._samples.items() if timestamp - kept[-1][0] > PACE_WINDOW_S
        ]:
            del self._samples[token]

    def walking(self, tokens: list[str], people: Iterable[int], over: float) -> frozenset[int]:
        """Those of ``people`` (indexes into ``tokens``) whose pace is over ``over`` (0: nobody
        is walking, the gate is off)."""
        return frozenset(i for i in people if is_walking(self.of(tokens[i]), over))

    def of(self, token: str) -> float:
        """``token``'s pace now; 0 (standing) while there is less than :data:`PACE_MIN_SPAN_S` of
        it to judge by."""
        samples = self._samples.get(token)
        if not samples or samples[-1][0] - samples[0][0] < PACE_MIN_SPAN_S:
            return 0.0
        (first, left0, top0, right0, bottom0) = samples[0]
        (last, left1, top1, right1, bottom1) = samples[-1]
        across = _both_edges(left1 - left0, right1 - right0)
        down = _both_edges(top1 - top0, bottom1 - bottom0)
        height = max(statistics.median(y2 - y1 for _, _, y1, _, y2 in samples), 1e-6)
        return math.hypot(across, down) / (last - first) / height


def _both_edges(one: float, other: float) -> float:
    """How far a box moved along one axis given how far its two edges did: the lesser, where
    they went the same way; none where they went apart or together (the box grew or shrank)."""
    if one * other <= 0.0:
        return 0.0
    return one if abs(one) < abs(other) else other


class ShelfWatch:
    """The shelf zones of one view and the people at them; see the module docstring.

    ``zones`` maps zone ids to polygons (normalised image coordinates); ``near`` (frame
    heights) is how close a person's box must come to a zone's bounds to be at it; a stay ends
    once the box has been away for ``leave_s`` (a box that jitters out for a frame does not
    restart the stay, its reaches or its time there); ``aspect`` is the frame's width / height.
    """

    def __init__(self, zones: dict[str, list[list[float]]], settings: ShelfSettings,
                 near: float, leave_s: float = 1.0, aspect: float = 1.0) -> None:  # fmt: skip
        self.settings = settings
        self.aspect = aspect
        bounds = [in_view_units(np.asarray(points), aspect) for points in zones.values()]
        self._polygons = {zone: Polygon(view) for zone, view in zip(zones, bounds)}
        #: (Z, 4) bounds of each zone grown by ``near``: x1, y1, x2, y2.
        self._bounds = np.array(
            [[*(b.min(axis=0) - near), *(b.max(axis=0) + near)] for b in bounds]
        ).reshape(-1, 4)
        #: (Z,) the top of each zone (its smallest y).
        self._tops = np.array([b[:, 1].min() for b in bounds])
        self._ids = list(zones)
        self.leave_s = leave_s
        self._stays: dict[tuple[str, str], _Stay] = {}
        self._paces = Paces(aspect)

    def __len__(self) -> int:
        return len(self._stays)

    @property
    def zones(self) -> list[str]:
        return list(self._ids)

    def at_shelf(self, boxes: np.ndarray) -> np.ndarray:
        """(N, Z) whether each normalised ``x1, y1, x2, y2`` box touches each zone's bounds."""
        if not len(boxes) or not self._ids:
            return np.zeros((len(boxes), len(self._ids)), dtype=bool)
        view = boxes_in_view_units(boxes, self.aspect)
        b, z = view[:, None, :], self._bounds[None, :, :]
        return (b[..., 0] <= z[..., 2]) & (b[..., 2] >= z[..., 0]) & (
            b[..., 1] <= z[..., 3]) & (b[..., 3] >= z[..., 1])  # fmt: skip

    def above_heads(self, boxes: np.ndarray, at: np.ndarray) -> np.ndarray:
        """(N,) whether a zone each person is at (``at``: :meth:`at_shelf` of ``boxes``) rises
        above the top of their box in the picture: a shelf they may reach up into."""
        if not len(boxes) or not self._ids:
            return np.zeros(len(boxes), dtype=bool)
        return np.asarray((at & (self._tops[None, :] < boxes[:, 1:2])).any(axis=1))

    def poses_wanted(self, boxes: np.ndarray, at: np.ndarray) -> dict[int, bool]:
        """The people at a shelf (indexes into ``boxes``; ``at``: :meth:`at_shelf` of them),
        each with whether their pose crop reaches up (:meth:`above_heads`)."""
        reach_up = self.above_heads(boxes, at)
        return {int(i): bool(reach_up[i]) for i in np.flatnonzero(at.any(axis=1))}

    def passing(self, tokens: list[str], people: Iterable[int]) -> frozenset[int]:
        """Those of ``people`` (indexes into ``tokens``) walking past: their pace, as of the
        last :meth:`present`, is over ``walking``. Their poses can wait for everyone else's."""
        return self._paces.walking(tokens, people, self.settings.walking)

    def present(self, tokens: list[str], boxes: np.ndarray, at: np.ndarray,
                timestamp: float) -> list[ZoneInteraction]:  # fmt: skip
        """One frame's people, their boxes and :meth:`at_shelf` of them: stays begin for those
        who came to a shelf; returns the interactions closed for those who left one."""
        if self._ids:
            self._paces.update(tokens, boxes, timestamp)
        here = {(self._ids[j], tokens[i]) for i, j in zip(*np.nonzero(at))}
        ended: list[ZoneInteraction] = []
        for key in [key for key in self._stays if key not in here]:
            if timestamp - self._stays[key].seen >= self.leave_s:
                ended += self._leave(key, self._stays[key].seen)
        for key in here:
            stay = self._stays.get(key)
            if stay is None:
                hands = ShelfInteractions(self._polygons[key[0]], self.settings)
                stay = self._stays[key] = _Stay(hands, timestamp, timestamp)
            stay.seen = timestamp
        return ended

    def observe(self, token: str, timestamp: float, pose: np.ndarray) -> list[ZoneInteraction]:
        """One pose of ``token`` (normalised image coordinates), fed to every shelf zone it is
        at; returns the interactions that ended with it."""
        pose = in_view_units(pose, self.aspect)
        pace = self._paces.of(token)
        ended: list[ZoneInteraction] = []
        for (zone, who), stay in self._stays.items():
            if who == token:
                ended += [
                    ZoneInteraction(zone, token, e)
                    for e in stay.hands.observe(timestamp, pose, pace)
                ]
        return ended

    def end(self, token: str, timestamp: float) -> list[ZoneInteraction]:
        """The session ended: close its open interactions at every shelf."""
        ended: list[ZoneInteraction] = []
        for key in [key for key in self._stays if key[1] == token]:
            ended += self._leave(key, timestamp)
        return ended

    def _leave(self, key: tuple[str, str], timestamp: float) -> list[ZoneInteraction]:
        stay = self._stays.pop(key, None)
        if stay is None:
            return []
        return [ZoneInteraction(key[0], key[1], e) for e in stay.hands.finish(timestamp)]

    def stays(self) -> list[ShelfStay]:
        """Everyone at a shelf now, with their reaches there so far (for the alert rules)."""
        return [
            ShelfStay(zone, token, stay.since, stay.hands.reaches_begun)
            for (zone, token), stay in self._stays.items()
        ]

"""Poses of the people at shelves, at a bounded rate per person and within a time budget.

Every frame, each person at a shelf whose last pose is at least ``pose_interval_s`` old is due;
the most overdue go first. The budget is a token bucket in milliseconds: every frame earns
``budget_share`` times the detector's time on it, plus the time the loop spent waiting for it (a
live camera faster than the loop leaves none; one held back by ``camera.fps_cap`` leaves the rest
of the frame period; a recording waits for the loop, loses no frame to a pose and counts as
:data:`MAX_SPARE_MS` spare), every pose spends what it took (MoveNet and the analysis of its
keypoints), and poses run only while the bucket is not empty. Poses therefore fill the loop's
idle time first, which costs no frames, and beyond it cost at most ``budget_share`` of the
detector's time (plus one pose of overshoot and the bucket's small cap), so the frame rate stays
at or above ``1 / (1 + budget_share)`` of what it is without shelves, on any hardware. In a
crowd, people wait for a later frame rather than stalling this one, and people walking past wait
for everyone standing: a walker's hands are not judged as on the shelf
(:mod:`intentcam.analytics.shelf`), so on a busy aisle the budget goes to the shopper who stopped
rather than being shared out among the people streaming by.

Privacy: the crop lives inside :meth:`intentcam.pose.movenet.PoseModel.keypoints` for one invoke;
the keypoints go to the shelf analytics and are not kept.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import numpy as np

from intentcam.config import ShelfConfig
from intentcam.pose.movenet import PoseModel

#: Receives (index of the person in the frame, 17 keypoints) for each pose computed.
PoseSink = Callable[[int, np.ndarray], None]
#: The bucket holds at most this many frames' worth of budget: a quiet minute does not buy a
#: burst that stalls the next crowded frame.
CAP_FRAMES = 3.0
#: Spare time counts up to this much per frame: a longer wait is a camera starting or away, not
#: a frame period, and must not buy a burst of poses that stalls the next frames.
MAX_SPARE_MS = 250.0


@dataclass
class PoseBudget:
    """Token bucket of pose milliseconds; see the module docstring."""

    share: float
    credit_ms: float = 0.0

    def earn(self, detect_ms: float, spare_ms: float = 0.0) -> None:
        """One frame whose detector took ``detect_ms`` after the loop had waited ``spare_ms``
        for it."""
        share = self.share * detect_ms
        spare = min(spare_ms, MAX_SPARE_MS)
        self.credit_ms = min(self.credit_ms + share + spare, CAP_FRAMES * share + spare)

    @property
    def available(self) -> bool:
        return self.credit_ms > 0

    def spend(self, milliseconds: float) -> None:
        self.credit_ms -= milliseconds


@dataclass
class PoseSampler:
    """Runs ``model`` on the people at shelves; see the module docstring."""

    model: PoseModel
    interval_s: float
    budget: PoseBudget
    #: ``poses`` computed, ``seen`` people at shelves (one per person and frame),
    #: ``over_budget`` people due a pose left for a later frame; ``passing_posed`` and
    #: ``passing_seen``: the same for those walking past.
    counts: Counter[str] = field(default_factory=Counter)
    _last: dict[str, float] = field(default_factory=dict)
    clock: Callable[[], float] = time.perf_counter

    @classmethod
    def from_config(cls, model: PoseModel, config: ShelfConfig) -> PoseSampler:
        return cls(model, config.pose_interval_s, PoseBudget(config.budget_share))

    def sample(
        self,
        image: np.ndarray,
        tokens: list[str],
        boxes: np.ndarray,
        at_shelf: Mapping[int, bool],
        now: float,
        sink: PoseSink,
        passing: Collection[int] = frozenset(),
    ) -> int:
        """Poses for the due people among ``at_shelf`` (indexes into ``tokens``/``boxes``, each
        with whether its crop reaches up above the box) while the budget lasts (the caller has
        added this frame's :meth:`PoseBudget.earn`), those in ``passing`` (walking past) after
        everyone else; returns how many were computed."""
        due = sorted(
            (i in passing, self._last.get(tokens[i], float("-inf")), i)
            for i in at_shelf
            if now - self._last.get(tokens[i], float("-inf")) >= self.interval_s
        )
        done = 0
        for _, _, index in due:
            if not self.budget.available:
                break
            started = self.clock()
            points = self.model.keypoints(image, boxes[index], reach_up=at_shelf[index])
            self._last[tokens[index]] = now
            sink(index, points)
            # What the pose's analysis takes is part of its cost, as the frame rate sees it.
            self.budget.spend((self.clock() - started) * 1e3)
            done += 1
        self.counts["poses"] += done
        self.counts["over_budget"] += len(due) - done
        self.counts["passing_posed"] += sum(walking for walking, _, _ in due[:done])
        self.counts["passing_seen"] += sum(i in passing for i in at_shelf)
        self.counts["seen"] += len(at_shelf)
        return done

    def forget(self, tokens: list[str]) -> None:
        """Sessions that ended: drop their rate state (memory stays bounded)."""
        for token in tokens:
            self._last.pop(token, None)

    def __len__(self) -> int:
        return len(self._last)

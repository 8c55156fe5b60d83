"""Behavioural intent signals of one session, from the foot point's path only (no faces).

Definitions (also in docs/analytics.md). Positions are in the analytics plane: frame heights, or
metres with a homography. To keep detector jitter out of the signals, the path is read in *steps*:
the foot point has moved a step once it is ``min_step`` away from the last step's end.

- ``dwell_s``         = last seen - first seen.
- ``path_length``     = sum of step lengths.
- ``zones``           = per zone: ``visits`` and total ``dwell_s`` of debounced visits.
- ``revisits``        = sum over zones of ``max(0, visits - 1)``: returns after leaving.
- ``engagement``      = seconds spent nearly still (speed < ``still_speed``) inside ``display``
                        zones / ``dwell_s``; 0..1.
- ``approach``        = distance moved *towards* the nearest display zone while within ``radius``
                        of it and outside it; ``avoid`` = distance moved *away* from a display zone
                        the session never entered, under the same conditions. ``approach_index`` =
                        (approach - avoid) / (approach + avoid), -1..1, 0 when neither happened.
- ``hesitation``      = number of direction reversals: consecutive steps turning by more than
                        120 degrees; ``hesitation_per_min`` divides it by the dwell in minutes.
- ``crossings``       = the line crossings of the session, ``[line, direction]``.
- ``interactions``    = per ``shelf`` zone the session reached into: how many ``reach``,
                        ``inspect`` and ``put_back`` (left out when there were none).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from intentcam.analytics.shelf import KINDS

REVERSAL_COS = math.cos(math.radians(120))


@dataclass(frozen=True)
class IntentSettings:
    min_step: float = 0.03
    still_speed: float = 0.05
    radius: float = 0.3


@dataclass
class SessionSignals:
    """Accumulates one token's signals while it is tracked."""

    token: str
    started: float
    settings: IntentSettings
    last_time: float = 0.0
    path_length: float = 0.0
    still_in_display_s: float = 0.0
    approach: float = 0.0
    avoid: float = 0.0
    hesitation: int = 0
    zone_visits: dict[str, int] = field(default_factory=dict)
    zone_dwell: dict[str, float] = field(default_factory=dict)
    entered_displays: set[str] = field(default_factory=set)
    crossings: list[tuple[str, str]] = field(default_factory=list)
    #: Per shelf zone, interactions by kind.
    interactions: dict[str, Counter[str]] = field(default_factory=dict)
    _point: np.ndarray | None = None
    _step_anchor: np.ndarray | None = None
    _last_step: np.ndarray | None = None
    _anchor_distances: np.ndarray | None = None

    def observe(
        self,
        point: np.ndarray,
        timestamp: float,
        in_display: bool,
        display_distances: np.ndarray,
        display_ids: list[str],
    ) -> None:
        """One observation of the foot point (plane coordinates), with its distance to each
        display zone (computed for all tokens at once by the caller)."""
        dt = timestamp - self.last_time if self._point is not None else 0.0
        if self._point is not None and dt > 0:
            speed = float(np.hypot(*(point - self._point))) / dt
            if in_display and speed < self.settings.still_speed:
                self.still_in_display_s += dt
        self._point = point
        self.last_time = timestamp
        if self._step_anchor is None:
            self._step_anchor = point
            self._anchor_distances = display_distances
            return
        step = point - self._step_anchor
        length = float(np.hypot(*step))
        if length < self.settings.min_step:
            return
        self.path_length += length
        if self._last_step is not None:
            cosine = float(step @ self._last_step) / (length * float(np.hypot(*self._last_step)))
            if cosine < REVERSAL_COS:
                self.hesitation += 1
        self._last_step = step
        self._approach_avoid(self._anchor_distances, display_distances, display_ids)
        self._step_anchor, self._anchor_distances = point, display_distances

    def _approach_avoid(
        self, before: np.ndarray | None, after: np.ndarray, display_ids: list[str]
    ) -> None:
        # No displays, or the zones were replaced live (set_zones) since the last step.
        if before is None or len(after) == 0 or len(before) != len(after):
            return
        nearest = int(np.argmin(before))
        if before[nearest] <= 0 or before[nearest] > self.settings.radius:
            return  # inside the zone, or too far from any display to be reacting to it
        change = float(after[nearest] - before[nearest])
        if change < 0:
            self.approach += -change
        elif display_ids[nearest] not in self.entered_displays:
            self.avoid += change

    def add_visit(self, zone: str, dwell: float) -> None:
        self.zone_visits[zone] = self.zone_visits.get(zone, 0) + 1
        self.zone_dwell[zone] = self.zone_dwell.get(zone, 0.0) + dwell

    def summary(self) -> dict[str, object]:
        """The session's signals; every figure rounded for compact telemetry."""
        dwell = max(self.last_time - self.started, 0.0)
        total = self.approach + self.avoid
        return {
            "dwell_s": round(dwell, 2),
            "path_length": round(self.path_length, 3),
            "zones": {
                zone: {"visits": visits, "dwell_s": round(self.zone_dwell[zone], 2)}
                for zone, visits in self.zone_visits.items()
            },
            "revisits": sum(max(0, visits - 1) for visits in self.zone_visits.values()),
            "engagement": round(self.still_in_display_s / dwell, 3) if dwell > 0 else 0.0,
            "approach": round(self.approach, 3),
            "avoid": round(self.avoid, 3),
            "approach_index": round((self.approach - self.avoid) / total, 3) if total > 0 else 0.0,
            "hesitation": self.hesitation,
            "hesitation_per_min": round(self.hesitation / (dwell / 60), 3) if dwell > 0 else 0.0,
            "crossings": [list(crossing) for crossing in self.crossings],
            **self._interactions(),
        }

    def _interactions(self) -> dict[str, object]:
        if not self.interactions:
            return {}
        return {"interactions": {zone: {kind: counts[kind] for kind in KINDS}
                                 for zone, counts in self.interactions.items()}}  # fmt: skip

    def add_interaction(self, zone: str, kind: str) -> None:
        self.interactions.setdefault(zone, Counter())[kind] += 1

"""Each session's sentiment, from its expression samples and how its dwell compares.

Holds, per live token, the quality-weighted expression samples (only with expression inference
on), and per zone the recent completed visit dwells, so that a session's ``dwell_rel`` compares it
with the median visitor of its main zone. Nothing here outlives the session it describes except
anonymous dwell durations.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from intentcam.sentiment.vector import ExpressionAccumulator, sentiment_vector

#: How many recent dwells per zone (and per session) the medians are taken over.
DWELL_HISTORY = 200


class SessionSentiment:
    """See the module docstring."""

    def __init__(self, zone_ids: list[str]) -> None:
        self._expressions: dict[str, ExpressionAccumulator] = {}
        self.replace_zones(zone_ids)

    def replace_zones(self, zone_ids: list[str]) -> None:
        """New zones (``set_zones``): the dwell history starts again."""
        self._zone_dwells: dict[str, deque[float]] = {
            zone: deque(maxlen=DWELL_HISTORY) for zone in zone_ids
        }
        self._session_dwells: deque[float] = deque(maxlen=DWELL_HISTORY)

    def add_expression(self, token: str, probabilities: np.ndarray, weight: float) -> None:
        """One quality-gated expression sample of a tracked session."""
        self._expressions.setdefault(token, ExpressionAccumulator()).add(probabilities, weight)

    def visit(self, zone: str, dwell: float) -> None:
        """A completed zone visit, for the zone's median dwell."""
        if zone in self._zone_dwells:
            self._zone_dwells[zone].append(dwell)

    def forget(self, token: str) -> None:
        """Drop a session's samples without a vector (a short or unknown session)."""
        self._expressions.pop(token, None)

    def vector(self, token: str, signals: dict[str, Any]) -> dict[str, Any]:
        """The session's v1 vector (``signals`` is its intent summary); forgets the session."""
        vector = sentiment_vector(
            signals, self._median_dwell(signals["zones"]), self._expressions.pop(token, None)
        )
        self._session_dwells.append(signals["dwell_s"])
        return vector

    def _median_dwell(self, zones: dict[str, Any]) -> float | None:
        if zones:
            main = max(zones, key=lambda zone: zones[zone]["dwell_s"])
            history = self._zone_dwells.get(main)
            if history:
                return float(np.median(history))
        return float(np.median(self._session_dwells)) if self._session_dwells else None

    def __len__(self) -> int:
        return len(self._expressions)

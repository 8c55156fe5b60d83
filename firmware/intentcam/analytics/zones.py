"""Zones: debounced enter/leave per token, occupancy and dwell of completed visits.

A token is *in* a zone once its foot point (for a ``shelf`` zone: its box near the shelf, which
the caller works out) has been inside for ``enter_s`` seconds without a break, and *out* again
after ``leave_s`` seconds outside; the visit is back-dated to the first inside (or outside)
moment, so debouncing delays the events but not the dwell. A track that ends while inside
completes its visit at its last observation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from intentcam.analytics.geometry import Polygon


@dataclass(frozen=True)
class Visit:
    zone: str
    token: str
    entered: float
    left: float
    #: Shelf zones: the interactions (reaches, inspects, put-backs) of this visit.
    interactions: int = 0

    @property
    def dwell(self) -> float:
        return self.left - self.entered


@dataclass
class _Presence:
    inside: bool = False
    #: When the raw inside/outside state started to differ from ``inside``.
    changing_since: float | None = None
    entered: float = 0.0
    last_seen: float = 0.0


@dataclass
class ZoneEvents:
    entered: list[tuple[str, float]] = field(default_factory=list)  # (token, time)
    visits: list[Visit] = field(default_factory=list)


class ZoneTracker:
    """Presence of tokens in one polygon zone."""

    def __init__(
        self,
        zone_id: str,
        kind: str,
        polygon: list[list[float]],
        enter_s: float = 1.0,
        leave_s: float = 1.0,
    ) -> None:
        self.id = zone_id
        self.kind = kind
        self.polygon = np.asarray(polygon, dtype=np.float64)
        self._shape = Polygon(self.polygon)
        self.enter_s = enter_s
        self.leave_s = leave_s
        self._presence: dict[str, _Presence] = {}

    def __len__(self) -> int:
        return len(self._presence)

    @property
    def occupancy(self) -> int:
        """Tokens confirmed inside now."""
        return sum(1 for presence in self._presence.values() if presence.inside)

    def contains(self, image_points: np.ndarray) -> np.ndarray:
        """Raw (undebounced) containment of foot points."""
        return self._shape.contains(image_points)

    def inside_tokens(self) -> set[str]:
        return {token for token, presence in self._presence.items() if presence.inside}

    def observe(
        self,
        tokens: list[str],
        image_points: np.ndarray,
        timestamp: float,
        raw_inside: np.ndarray | None = None,
    ) -> ZoneEvents:
        """Feed this frame's foot points (normalised image coordinates); ``raw_inside`` replaces
        the foot-point test where the caller decides who is in (shelf zones)."""
        events = ZoneEvents()
        if raw_inside is None:
            raw_inside = self._shape.contains(image_points)
        for token, inside in zip(tokens, raw_inside.tolist()):
            presence = self._presence.get(token)
            if presence is None:
                if not inside:
                    continue
                presence = self._presence[token] = _Presence()
            presence.last_seen = timestamp
            if inside == presence.inside:
                presence.changing_since = None
                continue
            if presence.changing_since is None:
                presence.changing_since = timestamp
            debounce = self.enter_s if inside else self.leave_s
            if timestamp - presence.changing_since >= debounce:
                self._flip(token, presence, events)
        return events

    def _flip(self, token: str, presence: _Presence, events: ZoneEvents) -> None:
        since = (
            presence.changing_since if presence.changing_since is not None else presence.last_seen
        )
        if presence.inside:
            events.visits.append(Visit(self.id, token, presence.entered, since))
            del self._presence[token]
            return
        presence.inside = True
        presence.entered = since
        presence.changing_since = None
        events.entered.append((token, since))

    def end(self, token: str) -> Visit | None:
        """The token's track ended: complete its visit (if inside) at its last observation."""
        presence = self._presence.pop(token, None)
        if presence is None or not presence.inside:
            return None
        return Visit(self.id, token, presence.entered, presence.last_seen)

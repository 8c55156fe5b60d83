"""Footfall: counting people who cross a (poly)line, with hysteresis, once per token and direction.

For each segment p1->p2 of the line, ``side(p) = (x2-x1)*(py-y1) - (y2-y1)*(px-x1)``; a move from
``side < 0`` to ``side > 0`` is ``in``, the reverse ``out``: with image coordinates (y down) that
is onto the right-hand side of someone walking the line from its first point to its last. A
line configured with ``in_side = "left"`` is given to the counter reversed
(``LineConfig.oriented_points``). Per token the counter keeps:

- ``side``: the side the foot point was last *confirmed* on, i.e. at least ``hysteresis`` away
  from the line (0 until the first confirmation);
- ``pending``: the net direction of line intersections by the foot point's movement since then.

A crossing counts when the point is confirmed on the other side *and* its path intersected the
line in that direction. So jitter on the line never counts (it never gets ``hysteresis`` away),
walking round the end of a line does not count (no intersection), and a person going back and
forth counts each direction once. A person who crosses and leaves the view before getting
``hysteresis`` away (a line near the frame edge) is counted when their track ends within
``edge_margin`` of the frame border on the far side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from intentcam.analytics.geometry import (
    distance_to_segments,
    in_view_units,
    segments_intersect,
    side_of_segments,
)

IN, OUT = "in", "out"


@dataclass
class _TokenState:
    point: np.ndarray
    side: int = 0
    pending: int = 0
    counted: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Crossing:
    line: str
    token: str
    direction: str
    timestamp: float


class LineCounter:
    """Counts crossings of one polyline given in normalised image coordinates."""

    def __init__(
        self,
        line_id: str,
        points: list[list[float]],
        aspect: float,
        hysteresis: float = 0.03,
        edge_margin: float = 0.04,
    ) -> None:
        self.id = line_id
        self.aspect = aspect
        scaled = in_view_units(np.asarray(points), aspect)
        self.starts, self.ends = scaled[:-1], scaled[1:]
        self.hysteresis = hysteresis
        self.edge_margin = edge_margin
        self._tokens: dict[str, _TokenState] = {}
        self.totals = {IN: 0, OUT: 0}

    def __len__(self) -> int:
        return len(self._tokens)

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        """Distance to the polyline (view units), signed by the side of the nearest segment."""
        distances = distance_to_segments(points, self.starts, self.ends)
        nearest = distances.argmin(axis=1)
        sides = side_of_segments(points, self.starts, self.ends)[np.arange(len(points)), nearest]
        return np.sign(sides) * distances[np.arange(len(points)), nearest]

    def observe(
        self,
        tokens: list[str],
        image_points: np.ndarray,
        timestamp: float,
        view_points: np.ndarray | None = None,
    ) -> list[Crossing]:
        """Feed this frame's foot points (normalised image coordinates) of tracked tokens.

        ``view_points`` are the same points already scaled by the aspect ratio, when the caller
        has them (the analytics compute them once per frame for every consumer).
        """
        if not tokens:
            return []
        points = (
            view_points if view_points is not None else in_view_units(image_points, self.aspect)
        )
        distance = self.signed_distance(points)
        known = [i for i, token in enumerate(tokens) if token in self._tokens]
        net = np.zeros(len(tokens), dtype=np.int64)
        if known:
            previous = np.stack([self._tokens[tokens[i]].point for i in known])
            current = points[known]
            crossed = segments_intersect(previous, current, self.starts, self.ends)
            before = np.sign(side_of_segments(previous, self.starts, self.ends))
            # +1 for each segment entered from its negative side (in), -1 for the reverse.
            net[known] = (crossed * -before).sum(axis=1).astype(np.int64)
        crossings = []
        for i, token in enumerate(tokens):
            state = self._tokens.get(token)
            if state is None:
                state = self._tokens[token] = _TokenState(points[i])
            state.point = points[i]
            state.pending = max(-1, min(1, state.pending + int(net[i])))
            if abs(distance[i]) >= self.hysteresis:
                crossing = self._confirm(state, int(np.sign(distance[i])), token, timestamp)
                if crossing:
                    crossings.append(crossing)
        return crossings

    def _confirm(
        self, state: _TokenState, new_side: int, token: str, timestamp: float
    ) -> Crossing | None:
        crossing = None
        if state.side != 0 and new_side != state.side and state.pending == new_side:
            crossing = self._count(state, new_side, token, timestamp)
        state.side = new_side
        state.pending = 0
        return crossing

    def _count(
        self, state: _TokenState, new_side: int, token: str, timestamp: float
    ) -> Crossing | None:
        direction = IN if new_side > 0 else OUT
        if direction in state.counted:
            return None
        state.counted.add(direction)
        self.totals[direction] += 1
        return Crossing(self.id, token, direction, timestamp)

    def end(self, token: str, timestamp: float) -> Crossing | None:
        """The token's track ended: count a pending crossing out of view, then forget the token."""
        state = self._tokens.pop(token, None)
        if state is None or state.side == 0 or state.pending != -state.side:
            return None
        x, y = state.point[0] / self.aspect, state.point[1]
        margin = self.edge_margin
        at_edge = x <= margin or y <= margin or x >= 1 - margin or y >= 1 - margin
        beyond = np.sign(self.signed_distance(state.point[None, :])[0]) == state.pending
        if at_edge and beyond:
            return self._count(state, state.pending, token, timestamp)
        return None

    def reset(self) -> None:
        """Zero the totals (a ``reset_counters`` command); per-token state is kept."""
        self.totals = {IN: 0, OUT: 0}

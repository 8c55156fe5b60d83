"""Line crossing logic: hysteresis, direction, once per token and direction, polylines, edges."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from intentcam.analytics.lines import IN, OUT, LineCounter

HORIZONTAL = [[0.1, 0.5], [0.9, 0.5]]  # side < 0 above (smaller y), > 0 below: moving down is "in"


def walk(
    counter: LineCounter,
    path: list[tuple[float, float]],
    token: str = "t",
    start: float = 0.0,
    dt: float = 0.1,
) -> list[str]:
    directions = []
    for step, point in enumerate(path):
        for crossing in counter.observe([token], np.array([point]), start + step * dt):
            directions.append(crossing.direction)
    return directions


def test_direction_follows_the_side_formula() -> None:
    # side(p) = (x2-x1)*(py-y1) - (y2-y1)*(px-x1): for this segment, side > 0 below the line.
    counter = LineCounter("door", HORIZONTAL, aspect=1.0, hysteresis=0.03)
    assert walk(counter, [(0.5, 0.3), (0.5, 0.45), (0.5, 0.55), (0.5, 0.7)], "a") == [IN]
    assert walk(counter, [(0.4, 0.7), (0.4, 0.55), (0.4, 0.45), (0.4, 0.3)], "b") == [OUT]
    assert counter.totals == {IN: 1, OUT: 1}


def test_reversed_point_order_reverses_direction() -> None:
    counter = LineCounter("door", HORIZONTAL[::-1], aspect=1.0, hysteresis=0.03)
    assert walk(counter, [(0.5, 0.3), (0.5, 0.7)]) == [OUT]


def test_jitter_on_the_line_never_counts() -> None:
    counter = LineCounter("door", HORIZONTAL, aspect=1.0, hysteresis=0.03)
    rng = np.random.default_rng(0)
    path = (
        [(0.5, 0.3)]
        + [(0.5 + rng.normal(0, 0.01), 0.5 + rng.uniform(-0.025, 0.025)) for _ in range(200)]
        + [(0.5, 0.3)]
    )
    assert walk(counter, path) == []


def test_each_direction_counts_once_per_token() -> None:
    counter = LineCounter("door", HORIZONTAL, aspect=1.0, hysteresis=0.03)
    back_and_forth = [(0.5, 0.3), (0.5, 0.7)] * 4
    assert walk(counter, back_and_forth) == [IN, OUT]
    assert counter.totals == {IN: 1, OUT: 1}
    # Another token going the same way counts again.
    assert walk(counter, [(0.5, 0.3), (0.5, 0.7)], token="other") == [IN]


def test_walking_round_the_end_of_the_line_does_not_count() -> None:
    counter = LineCounter("door", [[0.4, 0.5], [0.6, 0.5]], aspect=1.0, hysteresis=0.03)
    around = [(0.5, 0.3), (0.8, 0.3), (0.8, 0.7), (0.5, 0.7)]
    assert walk(counter, around) == []


def test_polyline_counts_on_any_segment() -> None:
    # An L-shaped line: along y = 0.5 then up x = 0.7.
    counter = LineCounter("l", [[0.1, 0.5], [0.7, 0.5], [0.7, 0.1]], aspect=1.0, hysteresis=0.03)
    assert walk(counter, [(0.3, 0.3), (0.3, 0.7)], "a") == [IN]  # through the first segment
    # Second segment (0.7, 0.5) -> (0.7, 0.1): side = 0.4 * (px - 0.7), positive to the right.
    assert walk(counter, [(0.6, 0.3), (0.8, 0.3)], "b") == [IN]
    assert walk(counter, [(0.8, 0.3), (0.6, 0.3)], "c") == [OUT]


def test_a_line_near_the_frame_edge_still_counts() -> None:
    # A door line 2% above the bottom edge: people leave the view before getting 3% past it.
    counter = LineCounter("edge", [[0.0, 0.98], [1.0, 0.98]], aspect=16 / 9, hysteresis=0.03)
    assert walk(counter, [(0.5, 0.8), (0.5, 0.9), (0.5, 0.99), (0.5, 1.0)]) == []
    crossing = counter.end("t", 1.0)
    assert crossing is not None and crossing.direction == IN
    assert counter.totals[IN] == 1


def test_ending_in_the_middle_of_the_view_does_not_count_a_pending_crossing() -> None:
    counter = LineCounter("door", HORIZONTAL, aspect=1.0, hysteresis=0.05)
    walk(counter, [(0.5, 0.3), (0.5, 0.52)])
    assert counter.end("t", 1.0) is None
    assert counter.totals == {IN: 0, OUT: 0}
    assert len(counter) == 0  # the token's state is gone


def test_aspect_ratio_scales_hysteresis_in_x() -> None:
    vertical = [[0.5, 0.1], [0.5, 0.9]]
    wide = LineCounter("v", vertical, aspect=2.0, hysteresis=0.05)
    square = LineCounter("v", vertical, aspect=1.0, hysteresis=0.05)
    # 0.03 in normalised x is 0.06 frame heights on a 2:1 frame, 0.03 on a square one.
    path = [(0.43, 0.5), (0.53, 0.5)]
    assert walk(wide, path) == [OUT]
    assert walk(square, path) == []


points = st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0))


@settings(max_examples=300, deadline=None)
@given(st.lists(points, min_size=2, max_size=40), st.floats(0.01, 0.1))
def test_property_each_direction_at_most_once_and_alternating(path, hysteresis) -> None:
    counter = LineCounter("door", HORIZONTAL, aspect=1.0, hysteresis=hysteresis)
    directions = walk(counter, path)
    assert len(directions) == len(set(directions)) <= 2
    if len(directions) == 2:
        assert directions[0] != directions[1]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.0, 1.0), st.floats(-1.0, 1.0)), min_size=2, max_size=60),
    st.floats(0.02, 0.1),
)
def test_property_staying_within_the_band_never_counts(path, hysteresis) -> None:
    """A foot point (a straddling box's bottom) that never leaves the hysteresis band never counts."""
    counter = LineCounter("door", HORIZONTAL, aspect=1.0, hysteresis=hysteresis)
    inside_band = [(0.1 + 0.8 * x, 0.5 + y * hysteresis * 0.99) for x, y in path]
    assert walk(counter, [(0.5, 0.2)] + inside_band) == []


@settings(max_examples=200, deadline=None)
@given(st.floats(0.15, 0.85), st.floats(0.0, 0.35), st.floats(0.65, 1.0), st.integers(2, 30))
def test_property_a_clean_pass_counts_exactly_once(x, start_y, end_y, steps) -> None:
    counter = LineCounter("door", HORIZONTAL, aspect=1.0, hysteresis=0.03)
    path = [(x, start_y + (end_y - start_y) * i / steps) for i in range(steps + 1)]
    assert walk(counter, path) == [IN]


def test_in_side_names_the_inside_without_a_sign_rule() -> None:
    """The same walk up the picture across a horizontal line drawn left to right: ``in`` when
    the inside is on the left of the line's direction, ``out`` with the default (right)."""
    from intentcam.config import LineConfig

    walk = [(0.5, 0.9 - 0.02 * step) for step in range(41)]  # bottom to top
    results = {}
    for side in ("right", "left"):
        line = LineConfig(id="door", points=[(0.2, 0.5), (0.8, 0.5)], in_side=side)
        counter = LineCounter(line.id, line.oriented_points(), aspect=1.0)
        for t, point in enumerate(walk):
            counter.observe(["p"], np.array([point]), float(t))
        results[side] = dict(counter.totals)
    assert results == {"right": {"in": 0, "out": 1}, "left": {"in": 1, "out": 0}}

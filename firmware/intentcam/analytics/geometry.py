"""Plane geometry on numpy arrays: foot points, polylines, polygons, the floor homography.

Analytics work in *view units*: normalised image coordinates with x multiplied by the frame's
aspect ratio (width / height), so distances are in frame heights in both directions. With a
homography they work in floor metres instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def foot_points(boxes: np.ndarray) -> np.ndarray:
    """Bottom centre of each normalised ``x1, y1, x2, y2`` box: where the person stands.

    Kept just inside the frame: a person cut off by the bottom edge stands on y = 1.0, which a
    zone drawn to the image border must still contain.
    """
    feet = np.column_stack([(boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3]])
    return np.clip(feet, 0.0, 1.0 - 1e-6)


def in_view_units(points: np.ndarray, aspect: float) -> np.ndarray:
    """A float copy of ``points`` (rows of normalised ``x, y``, and any further columns such as
    a keypoint's score) in view units: x multiplied by ``aspect`` (width / height)."""
    view = np.array(points, dtype=np.float64)
    view[:, 0] *= aspect
    return view


def boxes_in_view_units(boxes: np.ndarray, aspect: float) -> np.ndarray:
    """(N, 4) normalised ``x1, y1, x2, y2`` boxes in view units (:func:`in_view_units` of both
    corners)."""
    return in_view_units(np.reshape(boxes, (-1, 2)), aspect).reshape(-1, 4)


def side_of_segments(points: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``(x2-x1)*(py-y1) - (y2-y1)*(px-x1)`` for every point (N) and segment (S): (N, S)."""
    dx = ends[:, 0] - starts[:, 0]
    dy = ends[:, 1] - starts[:, 1]
    return dx[None, :] * (points[:, None, 1] - starts[None, :, 1]) - dy[None, :] * (
        points[:, None, 0] - starts[None, :, 0]
    )


def distance_to_segments(points: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Euclidean distance from every point (N) to every segment (S): (N, S)."""
    direction = ends - starts
    length_sq = np.maximum((direction**2).sum(axis=1), 1e-18)
    rel = points[:, None, :] - starts[None, :, :]
    t = np.clip((rel * direction[None, :, :]).sum(axis=2) / length_sq[None, :], 0.0, 1.0)
    closest = starts[None, :, :] + t[:, :, None] * direction[None, :, :]
    return np.sqrt(((points[:, None, :] - closest) ** 2).sum(axis=2))


def segments_intersect(
    p: np.ndarray, q: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> np.ndarray:
    """Whether each movement p[i]->q[i] (N) properly crosses each segment (S): (N, S) bool.

    Touching an endpoint of the movement counts (a point landing exactly on the line is
    resolved by the hysteresis later), collinear overlap does not.
    """
    side_p = side_of_segments(p, starts, ends)
    side_q = side_of_segments(q, starts, ends)
    move = q - p
    # Sides of the segment's endpoints relative to each movement line.
    side_a = move[:, None, 0] * (starts[None, :, 1] - p[:, None, 1]) - move[:, None, 1] * (
        starts[None, :, 0] - p[:, None, 0]
    )
    side_b = move[:, None, 0] * (ends[None, :, 1] - p[:, None, 1]) - move[:, None, 1] * (
        ends[None, :, 0] - p[:, None, 0]
    )
    return (side_p * side_q <= 0) & (side_p != side_q) & (side_a * side_b <= 0) & (side_a != side_b)


class Polygon:
    """A closed polygon with its edges precomputed (it is tested against points every frame)."""

    def __init__(self, vertices: np.ndarray) -> None:
        self.vertices = np.asarray(vertices, dtype=np.float64)
        self.starts = self.vertices
        self.ends = np.roll(self.vertices, -1, axis=0)

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Even-odd rule, vectorised over points: (N,) bool."""
        if len(points) == 0:
            return np.zeros(0, dtype=bool)
        x, y = points[:, 0:1], points[:, 1:2]
        xi, yi = self.starts[:, 0][None, :], self.starts[:, 1][None, :]
        xj, yj = self.ends[:, 0][None, :], self.ends[:, 1][None, :]
        straddles = (yi > y) != (yj > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = (xj - xi) * (y - yi) / (yj - yi) + xi
        return ((straddles & (x < x_cross)).sum(axis=1) % 2) == 1

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Distance from each point: 0 inside, else to the nearest edge."""
        if len(points) == 0:
            return np.zeros(0)
        edges = distance_to_segments(points, self.starts, self.ends).min(axis=1)
        return np.where(self.contains(points), 0.0, edges)


@dataclass(frozen=True)
class ViewSpace:
    """Maps normalised image points to the analytics plane (view units or floor metres)."""

    aspect: float
    homography: np.ndarray | None = None

    @property
    def unit(self) -> str:
        return "m" if self.homography is not None else "frame_height"

    def to_plane(self, points: np.ndarray) -> np.ndarray:
        """Normalised image points (N, 2) to plane coordinates (N, 2)."""
        if len(points) == 0:
            return np.zeros((0, 2))
        if self.homography is None:
            return in_view_units(points, self.aspect)
        projected = cv2.perspectiveTransform(
            points.reshape(-1, 1, 2).astype(np.float64), self.homography
        )
        return projected.reshape(-1, 2)


def homography_from(image_points: list[list[float]], floor_points: list[list[float]]) -> np.ndarray:
    """The 3x3 perspective transform taking four normalised image points to four floor points."""
    return cv2.getPerspectiveTransform(
        np.asarray(image_points, dtype=np.float32), np.asarray(floor_points, dtype=np.float32)
    ).astype(np.float64)

"""Heatmap: track-seconds of foot points per grid cell, k-anonymised per window.

Cells are laid over the image (normalised 0..1) or, with a homography, over the floor rectangle
``[0, floor_w] x [0, floor_h]`` metres. Each frame adds its time step to the cell under every
tracked foot point. At the end of a window every cell visited by fewer than ``k_min`` distinct
tokens is zeroed, so no cell describes one or two identifiable people.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from intentcam.analytics.geometry import ViewSpace

#: A frame gap longer than this (camera outage) adds no more than this to the heatmap.
MAX_STEP_S = 1.0


@dataclass
class Heatmap:
    grid: tuple[int, int]
    space: ViewSpace
    k_min: int = 3
    floor_size: tuple[float, float] | None = None
    _seconds: np.ndarray = field(init=False)
    _visitors: dict[int, set[int]] = field(init=False, default_factory=dict)
    _token_ids: dict[str, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        columns, rows = self.grid
        self._seconds = np.zeros((rows, columns), dtype=np.float64)

    @property
    def coordinate_space(self) -> str:
        return "floor_m" if self.space.homography is not None else "image_norm"

    def cells(self, image_points: np.ndarray, plane: np.ndarray | None = None) -> np.ndarray:
        """Flat cell index of each point, or -1 outside the grid.

        ``plane`` are the points already mapped to the floor, when the caller has them.
        """
        columns, rows = self.grid
        if self.space.homography is not None and self.floor_size is not None:
            if plane is None:
                plane = self.space.to_plane(image_points)
            u, v = plane[:, 0] / self.floor_size[0], plane[:, 1] / self.floor_size[1]
        else:
            u, v = image_points[:, 0], image_points[:, 1]
        col = np.floor(u * columns).astype(np.int64)
        row = np.floor(np.minimum(v, 1 - 1e-9) * rows).astype(np.int64)
        col = np.where(u >= 1.0, columns - 1, col)  # a foot point on the bottom/right border
        valid = (col >= 0) & (col < columns) & (row >= 0) & (row < rows)
        return np.where(valid, row * columns + col, -1)

    def add(
        self,
        tokens: list[str],
        image_points: np.ndarray,
        dt: float,
        plane: np.ndarray | None = None,
    ) -> None:
        """Add ``dt`` seconds to the cell under each token's foot point."""
        if not tokens:
            return
        cells = self.cells(image_points, plane)
        valid = cells >= 0
        np.add.at(self._seconds.reshape(-1), cells[valid], min(dt, MAX_STEP_S))
        for token, cell in zip(tokens, cells.tolist()):
            if cell >= 0:
                # Small per-window integers stand for tokens; nothing maps them back.
                number = self._token_ids.setdefault(token, len(self._token_ids))
                self._visitors.setdefault(cell, set()).add(number)

    def close(self) -> dict[str, object]:
        """The window's grid (k-suppressed) and its statistics; starts a new window."""
        counts = np.zeros(self._seconds.size, dtype=np.int64)
        for cell, visitors in self._visitors.items():
            counts[cell] = len(visitors)
        seconds = self._seconds.reshape(-1).copy()
        suppressed = (counts < self.k_min) & (seconds > 0)
        seconds[counts < self.k_min] = 0.0
        rows, columns = self._seconds.shape
        result = {
            "grid": [columns, rows],
            "space": self.coordinate_space,
            "seconds": seconds.reshape(rows, columns),
            "suppressed_cells": int(suppressed.sum()),
            "k_min": self.k_min,
        }
        if self.coordinate_space == "floor_m" and self.floor_size is not None:
            # The grid spans [0, w] x [0, h] floor metres: a report needs it to draw the cells.
            result["extent_m"] = [float(self.floor_size[0]), float(self.floor_size[1])]
        self._seconds[:] = 0.0
        self._visitors.clear()
        self._token_ids.clear()
        return result

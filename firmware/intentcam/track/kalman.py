"""A constant-velocity Kalman filter over many boxes at once, with time steps in seconds.

State per track: ``cx, cy, w, h, vcx, vcy, vw, vh`` in frame-height units (x is scaled by the
frame's aspect ratio so that a step right and a step down are the same distance). Noise grows with
the box height, as in SORT/DeepSORT, but per second instead of per frame: the frame rate varies
with load and motion gating, and a filter tuned per frame would drift when it does.
"""

from __future__ import annotations

import numpy as np

DIM = 4
#: Position noise as a fraction of box height (measurement and process, per sqrt(second)).
POSITION_STD = 1.0 / 20
VELOCITY_STD = 1.0 / 8
MEASUREMENT_STD = 1.0 / 20

_H = np.hstack([np.eye(DIM), np.zeros((DIM, DIM))])


def transition(dt: float) -> np.ndarray:
    """State transition for a time step of ``dt`` seconds."""
    matrix = np.eye(2 * DIM)
    matrix[:DIM, DIM:] = np.eye(DIM) * dt
    return matrix


def initiate(measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (N, 8) and covariance (N, 8, 8) of new tracks from (N, 4) ``cx, cy, w, h``."""
    count = len(measurements)
    mean = np.zeros((count, 2 * DIM))
    mean[:, :DIM] = measurements
    heights = measurements[:, 3:4]
    std = np.hstack(
        [2 * POSITION_STD * heights.repeat(DIM, 1), 10 * VELOCITY_STD * heights.repeat(DIM, 1)]
    )
    covariance = np.zeros((count, 2 * DIM, 2 * DIM))
    idx = np.arange(2 * DIM)
    covariance[:, idx, idx] = std**2
    return mean, covariance


def predict(mean: np.ndarray, covariance: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Advance every track by ``dt`` seconds."""
    if len(mean) == 0:
        return mean, covariance
    motion = transition(dt)
    heights = np.maximum(mean[:, 3:4], 1e-3)
    std = np.hstack(
        [POSITION_STD * heights.repeat(DIM, 1), VELOCITY_STD * heights.repeat(DIM, 1)]
    ) * np.sqrt(max(dt, 1e-3))
    noise = np.zeros_like(covariance)
    idx = np.arange(2 * DIM)
    noise[:, idx, idx] = std**2
    mean = mean @ motion.T
    covariance = motion @ covariance @ motion.T + noise
    # Width and height cannot go negative however long a track coasts.
    mean[:, 2:4] = np.maximum(mean[:, 2:4], 1e-4)
    return mean, covariance


def update(
    mean: np.ndarray, covariance: np.ndarray, measurements: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Correct N tracks with their N matched measurements (``cx, cy, w, h``)."""
    if len(mean) == 0:
        return mean, covariance
    heights = np.maximum(mean[:, 3:4], 1e-3)
    std = MEASUREMENT_STD * heights.repeat(DIM, 1)
    innovation_cov = _H @ covariance @ _H.T
    idx = np.arange(DIM)
    innovation_cov[:, idx, idx] += std**2
    cross = covariance @ _H.T  # (N, 8, 4)
    gain = np.linalg.solve(innovation_cov, cross.transpose(0, 2, 1)).transpose(0, 2, 1)
    residual = measurements - mean[:, :DIM]
    mean = mean + np.einsum("nij,nj->ni", gain, residual)
    covariance = covariance - gain @ _H @ covariance
    return mean, covariance


def boxes_to_measurements(boxes: np.ndarray, aspect: float) -> np.ndarray:
    """Normalised ``x1, y1, x2, y2`` boxes to ``cx, cy, w, h`` with x scaled by width/height."""
    scale = np.array([aspect, 1.0, aspect, 1.0])
    scaled = boxes * scale
    return np.column_stack(
        [
            (scaled[:, 0] + scaled[:, 2]) / 2,
            (scaled[:, 1] + scaled[:, 3]) / 2,
            scaled[:, 2] - scaled[:, 0],
            scaled[:, 3] - scaled[:, 1],
        ]
    )


def measurements_to_boxes(state: np.ndarray, aspect: float) -> np.ndarray:
    """The inverse of :func:`boxes_to_measurements` for the first four state columns."""
    cx, cy, w, h = state[:, 0], state[:, 1], state[:, 2], state[:, 3]
    boxes = np.column_stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return boxes / np.array([aspect, 1.0, aspect, 1.0])

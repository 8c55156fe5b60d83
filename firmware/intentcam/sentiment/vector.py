"""The sentiment vector, schema ``intentcam.sentiment.v1``: 16 int8 values with a fixed layout.

| slot | name | source | float range -> int8 |
|---|---|---|---|
| 0 | engagement | session signal (still time in display zones / dwell) | 0..1 -> 0..127 |
| 1 | approach | approach / (approach + avoid) | 0..1 -> 0..127 |
| 2 | avoid | avoid / (approach + avoid) | 0..1 -> 0..127 |
| 3 | hesitation | reversals per minute / 10, capped | 0..1 -> 0..127 |
| 4 | dwell_rel | log2(dwell / median dwell of the session's main zone), capped at +-4 | -1..1 -> -127..127 |
| 5-11 | angry, disgust, fear, happy, sad, surprise, neutral | quality-weighted mean of the FER probabilities over the session | 0..1 -> 0..127 |
| 12 | valence | sum of p(class) x valence(class), mapping below | -1..1 -> -127..127 |
| 13 | arousal | sum of p(class) x arousal(class), mapping below | -1..1 -> -127..127 |
| 14 | samples | faces that passed the quality gate | count, capped at 127 |
| 15 | confidence | mean quality weight of those faces | 0..1 -> 0..127 |

Slots 0-4 (behavioural) are always present. Slots 5-15 are the expression part: when expression
inference is off, or no face of the session passed the quality gate, they are **-128 (absent)**
and ``expression`` is false: absent is not zero.

Valence and arousal of the classes: a fixed mapping after Russell's circumplex model of affect:
angry (-0.6, 0.7), disgust (-0.7, 0.2), fear (-0.6, 0.6), happy (0.8, 0.5), sad (-0.7, -0.4),
surprise (0.3, 0.8), neutral (0.0, 0.0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SCHEMA = "intentcam.sentiment.v1"
CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
LAYOUT = (
    "engagement",
    "approach",
    "avoid",
    "hesitation",
    "dwell_rel",
    *CLASSES,
    "valence",
    "arousal",
    "samples",
    "confidence",
)
ABSENT = -128
VALENCE_AROUSAL = np.array(
    [(-0.6, 0.7), (-0.7, 0.2), (-0.6, 0.6), (0.8, 0.5), (-0.7, -0.4), (0.3, 0.8), (0.0, 0.0)]
)


def unit(value: float) -> int:
    """0..1 -> 0..127."""
    return int(round(float(np.clip(value, 0.0, 1.0)) * 127))


def signed(value: float) -> int:
    """-1..1 -> -127..127."""
    return int(round(float(np.clip(value, -1.0, 1.0)) * 127))


@dataclass
class ExpressionAccumulator:
    """The quality-weighted average of one session's expression probabilities."""

    weighted: np.ndarray = field(default_factory=lambda: np.zeros(7))
    weight: float = 0.0
    samples: int = 0

    def add(self, probabilities: np.ndarray, weight: float) -> None:
        self.weighted += weight * probabilities.astype(np.float64)
        self.weight += weight
        self.samples += 1

    @property
    def mean(self) -> np.ndarray:
        return self.weighted / self.weight if self.weight > 0 else np.zeros(7)


def sentiment_vector(
    signals: dict[str, Any], median_dwell: float | None, expression: ExpressionAccumulator | None
) -> dict[str, Any]:
    """The v1 vector of one finished session (``signals`` is its intent summary)."""
    total = signals["approach"] + signals["avoid"]
    dwell = signals["dwell_s"]
    if median_dwell and median_dwell > 0 and dwell > 0:
        dwell_rel = float(np.clip(math.log2(dwell / median_dwell), -4, 4)) / 4
    else:
        dwell_rel = 0.0
    values = [
        unit(signals["engagement"]),
        unit(signals["approach"] / total) if total > 0 else 0,
        unit(signals["avoid"] / total) if total > 0 else 0,
        unit(signals["hesitation_per_min"] / 10),
        signed(dwell_rel),
    ]
    present = expression is not None and expression.samples > 0
    if present:
        assert expression is not None
        mean = expression.mean
        valence, arousal = mean @ VALENCE_AROUSAL
        values += [unit(p) for p in mean] + [
            signed(valence),
            signed(arousal),
            min(expression.samples, 127),
            unit(expression.weight / expression.samples),
        ]
    else:
        values += [ABSENT] * 11
    return {"schema": SCHEMA, "expression": present, "v": values}


def mean_vector(vectors: list[dict[str, Any]]) -> dict[str, Any]:
    """Slot-wise mean of several sessions' vectors (the per-zone aggregate).

    Behavioural slots average over all; expression slots over the sessions that have them
    (absent if none).
    """
    matrix = np.array([vector["v"] for vector in vectors], dtype=np.float64)
    with_expression = np.array([vector["expression"] for vector in vectors])
    values = [int(round(v)) for v in matrix[:, :5].mean(axis=0)]
    if with_expression.any():
        values += [int(round(v)) for v in matrix[with_expression, 5:].mean(axis=0)]
    else:
        values += [ABSENT] * 11
    return {
        "schema": SCHEMA,
        "sessions": len(vectors),
        "expression_sessions": int(with_expression.sum()),
        "v": values,
    }


def decode(values: list[int]) -> dict[str, float | None]:
    """A v1 vector's slots by name, back in their float ranges; ``None`` where absent."""
    decoded: dict[str, float | None] = {}
    for name, value in zip(LAYOUT, values):
        if value == ABSENT:
            decoded[name] = None
        elif name == "samples":
            decoded[name] = float(value)
        else:
            decoded[name] = round(value / 127, 3)
    return decoded

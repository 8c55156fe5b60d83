"""Charts drawn with matplotlib's Agg backend, as bytes (the store report, eval-shelf's
timeline). Gateway and evaluation side only: matplotlib is an extra, never on a camera."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any


def figure_bytes(draw: Callable[[Any, Any], None], size: tuple[float, float] = (9.0, 3.2),
                 fmt: str = "svg") -> bytes:  # fmt: skip
    """``draw(figure, axes)`` on a new figure of ``size`` inches, saved as ``fmt`` (svg, png).
    The same drawing gives the same bytes (no date, a fixed SVG id salt)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Set for this figure only, not matplotlib's globals.
    with plt.rc_context({"svg.hashsalt": "intentcam"}):
        figure, axes = plt.subplots(figsize=size, layout="constrained")
        draw(figure, axes)
        buffer = io.BytesIO()
        metadata = {"Date": None} if fmt == "svg" else None
        figure.savefig(buffer, format=fmt, dpi=110, metadata=metadata)
        plt.close(figure)
    return buffer.getvalue()

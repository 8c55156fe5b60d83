"""Files the project ships beside the package rather than inside it.

The model manifest and the evaluation's hand-made overlays (lines of the MOT sequences, the shelf
labels) live at the top of a source checkout, where people edit them. A wheel installs the same
files under ``<prefix>/share/intentcam/`` (``[tool.setuptools.data-files]`` in pyproject.toml),
so one lookup serves both: the checkout's copy when the package runs from one, else the
installed copy. Without this an installed ``intentcam eval`` would find no counting lines and
quietly score no crossings.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: The top of the source checkout this package would sit in (the folder above ``firmware/``).
CHECKOUT_ROOT = Path(__file__).resolve().parents[2]


def project_file(relative: str) -> Path:
    """``relative`` (e.g. ``"models_tflite/manifest.toml"``) in the source checkout when it
    exists there, else under the installed share folder (which may not have it either: the
    caller's own error then names the installed path)."""
    checkout = CHECKOUT_ROOT / relative
    if checkout.exists():
        return checkout
    return Path(sys.prefix) / "share" / "intentcam" / relative

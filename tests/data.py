"""Where the tests' real data lives: the shared clips, images, sequences and model mirror.

Nothing here is committed data: ``../shared`` (or ``INTENTCAM_SHARED``) holds the videos and the
model mirror, with their provenance in its SOURCES.md files.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INTENTCAM_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data"
CONCOURSE = DATA / "concourse_overhead.avi"
MALL = DATA / "counting" / "mall_dataset" / "mall_frames_0001-0400.mp4"
CAVIAR = DATA / "mot" / "caviar_oneleaveshop1_cor"
SHELF_CLIPS = DATA / "shelf"


def mirror_dir() -> Path | None:
    """The model mirror: ``INTENTCAM_MODEL_MIRROR``, else ``../shared/models`` if present."""
    value = os.environ.get("INTENTCAM_MODEL_MIRROR")
    if value:
        return Path(value)
    candidate = SHARED / "models"
    return candidate if candidate.is_dir() else None

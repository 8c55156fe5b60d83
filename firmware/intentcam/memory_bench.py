"""The daemon's own memory: ``intentcam run`` in a child process, measured from a cold start.

``intentcam bench`` reports ``daemon_rss_peak_mb`` from here, before it loads anything itself.
Two things would otherwise distort it. The bench's own process loads the peer and every model,
so its peak is not the daemon's. And the resident size of a shared library depends on the page
cache: a process is charged for the cached pages around each page it touches, so libraries that
another process (the rest of the bench) or pip has just been through cost more. A shared library that pip has just written sits in the page cache in the large blocks the write
created, and a process that maps it is then charged for whole blocks it never touches: measured
here, ``import cv2`` right after ``pip install`` costs 61 MB of resident memory, and 41 MB once
the file has been read back from disk, as a device does after a reboot. ``intentcam bench``
flushes and evicts the libraries first and starts the daemon before anything else maps them,
so that ``daemon_rss_peak_mb`` measures the daemon as on a device after a reboot, not how
recently it was installed. Pages some process still maps stay (the kernel keeps them).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from intentcam.config import ENV_PREFIX, Settings
from intentcam.errors import UserError

#: Packages whose native libraries make up most of the daemon's file-backed memory.
NATIVE_PACKAGES = ("cv2", "onnxruntime", "ai_edge_litert", "numpy", "pydantic_core", "lap")


def site_folders(packages: Iterable[str] = NATIVE_PACKAGES) -> set[Path]:
    """The folders (site-packages) holding these packages, found without importing them."""
    folders = set()
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin is not None:
            folders.add(Path(spec.origin).resolve().parent.parent)
    return folders


def evict_libraries(folders: Iterable[Path]) -> int:
    """Write back and evict every shared object under ``folders``; returns how many."""
    os.sync()  # dirty pages cannot be evicted
    evicted = 0
    for folder in folders:
        for path in folder.rglob("*.so*"):
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                evicted += 1
            finally:
                os.close(fd)
    return evicted


#: A typical installation's geometry, measured when the config has none: one door line across
#: the middle and two zones, so the daemon's memory includes its analytics.
TYPICAL_LINES = [{"id": "door", "points": [[0.1, 0.55], [0.9, 0.55]]}]
TYPICAL_ZONES = [
    {"id": "left", "points": [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]},
    {"id": "right", "points": [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]},
]


def daemon_environment(settings: Settings, state_dir: Path) -> dict[str, str]:
    """``INTENTCAM_*`` variables that give a child ``intentcam run`` exactly these settings, with
    its own state dir, no broker, and a typical line and zones where the config has none."""
    effective = settings.model_dump(mode="json")
    effective["paths"].update(state_dir=str(state_dir), model_dir=str(settings.paths.models))
    effective["mqtt"]["host"] = None
    effective["lines"] = effective["lines"] or TYPICAL_LINES
    effective["zones"] = effective["zones"] or TYPICAL_ZONES
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(
        {f"{ENV_PREFIX}{key.upper()}": json.dumps(value) for key, value in effective.items()}
    )
    return env


def daemon_memory(settings: Settings, clip: Path, frames: int) -> dict[str, Any]:
    """Peak RSS of ``intentcam run`` on the clip, in a child process of its own.

    The bench's own process also loads the peer and every model, so its peak is not the
    daemon's; the child's (its own ``VmHWM``, from its ``--json`` summary) is what a device
    pays. ``wait4``'s figure would not do: Linux charges a child the parent's pages it had
    before ``exec``.
    """
    with tempfile.TemporaryDirectory(prefix="intentcam-bench-daemon-") as folder:
        empty_config = Path(folder) / "empty.toml"
        empty_config.write_text("", encoding="utf-8")  # not /etc/intentcam's: the env says all
        argv = [sys.executable, "-m", "intentcam", "run", "--config", str(empty_config),
                "--source", str(clip), "--max-frames", str(frames), "--sink", "none", "--json"]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=daemon_environment(settings, Path(folder) / "state"),
        )
    try:
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        peak = summary["peak_rss_mb"]
    except (ValueError, IndexError, KeyError):
        last = done.stderr.strip().splitlines()
        raise UserError(
            f"intentcam run (for daemon_rss_peak_mb) exited {done.returncode}: "
            f"{last[-1] if last else 'no message'}"
        ) from None
    return {
        "daemon_rss_peak_mb": peak,
        "daemon_frames": summary["frames"],
        "daemon_wall_s": round(time.perf_counter() - started, 1),
        "daemon_geometry": {
            "lines": len(settings.lines) or len(TYPICAL_LINES),
            "zones": len(settings.zones) or len(TYPICAL_ZONES),
        },  # fmt: skip
    }

"""Records shared by several stages of the flow: a leaf module that imports nothing of ours.

A *record* is one JSON-ready dict that the frame loop hands downstream (``counts``, ``sessions``,
``heatmap``, ``progress``, ``summary``, ``frame``). It is encoded once, here, and the same text goes
to the spool and to the local sink.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

Record = dict[str, Any]


@dataclass(frozen=True)
class SessionEnd:
    """A session token that stopped being tracked."""

    token: str
    started: float
    ended: float
    #: ``left`` (track ended), ``rotated`` (max session length) or ``shutdown``.
    reason: str


def encode(record: Record) -> str:
    """Compact one-line JSON (UTF-8 characters kept as they are)."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def local_timezone(
    environ: dict[str, str] | None = None, localtime: Path = Path("/etc/localtime")
) -> str:
    """The IANA name of the local time zone (``TZ``, else where ``/etc/localtime`` points,
    else ``/etc/timezone``), ``UTC`` when none says."""
    value = (os.environ if environ is None else environ).get("TZ", "").lstrip(":")
    if value and not value.startswith("/"):
        return value
    try:
        target = str(localtime.resolve())
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
        return localtime.with_name("timezone").read_text(encoding="utf-8").strip() or "UTC"
    except OSError:
        return "UTC"


def wall_of(text: str) -> float:
    """The wall-clock seconds of an ISO 8601 time as :func:`iso` writes it (``Z`` or an offset).

    Raises ``ValueError`` for anything else."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def people_in_words(count: int) -> str:
    """``count`` people in words, as the logs, alerts and the installer's commands say it:
    ``1 person``, ``3 people``."""
    return f"{count} {'person' if count == 1 else 'people'}"


def iso(wall: float) -> str:
    """UTC ISO 8601 with milliseconds, e.g. ``2026-11-21T12:00:00.000Z``."""
    return (
        datetime.fromtimestamp(wall, timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )

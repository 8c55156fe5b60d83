"""Telemetry messages for a report, from a JSON Lines file.

Three line shapes are understood, so any recording works: a message as published (what
``intentcam run --sink jsonl:`` writes), ``intentcam tail --json``'s ``{"topic", "message", ...}``,
and anything else (``progress``, ``summary``, the tail's summary line), which is skipped. A line
that is not JSON is an error naming the file and the line: a report must not quietly miss data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from intentcam.errors import UserError

#: The message types a report reads.
USED = ("counts", "sessions", "heatmap", "status", "alert")


def message_of(item: Any) -> dict[str, Any] | None:
    """The telemetry message in one parsed line, or ``None`` when it holds none a report uses."""
    if isinstance(item, dict) and isinstance(item.get("message"), dict):
        item = item["message"]
    if isinstance(item, dict) and item.get("type") in USED and "device" in item:
        return item
    return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every usable message of a JSON Lines file, in file order."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(
            f"--from {path}: cannot read ({exc.strerror or exc})", exit_code=2
        ) from None
    except UnicodeDecodeError:
        raise UserError(
            f"--from {path}: not UTF-8 text (expected JSON Lines)", exit_code=2
        ) from None
    messages = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise UserError(
                f"--from {path}, line {number}: not JSON ({exc})", exit_code=2
            ) from None
        message = message_of(item)
        if message is not None:
            messages.append(message)
    return messages

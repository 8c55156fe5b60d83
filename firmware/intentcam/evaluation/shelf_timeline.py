"""The picture of an ``intentcam eval-shelf`` run: every clip's labelled and detected events on a
time line, so a miss or a false event is seen at a glance (``eval-shelf --timeline FILE``).

One lane per clip and kind (reach, inspect, put back): a labelled event is a light bar the
lane's height, a detected one a dark bar inside it (detections that overlap in time, of two
people at one shelf, side by side). A label no detection matched has a red
edge (missed), a detection that matched no label is red (false). Needs matplotlib (the ``eval``
extra); never used on a camera.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from intentcam.analytics.shelf import KINDS
from intentcam.charts import figure_bytes
from intentcam.errors import UserError

#: File types the picture can be written as (by the file's suffix).
FORMATS = (".svg", ".png")
COLOURS = {"reach": "#1f6fb4", "inspect": "#2a9d3c", "put_back": "#8e5cc4"}
MISS = "#d62728"
#: The opacity of a labelled event's bar (the detected one is drawn over it, opaque).
LIGHT = 0.3
LANE_INCHES = 0.24
#: The height of the band detected events are drawn in, within a lane of height 1; events that
#: overlap in time share it (:func:`slots`).
FOUND_HEIGHT = 0.4


def check_timeline_path(path: Path) -> None:
    """Refuse, before any work, a picture that could not be written: an unknown suffix, a
    missing folder or matplotlib not installed."""
    if path.suffix.lower() not in FORMATS:
        raise UserError(f"--timeline {path}: write .svg or .png, not {path.suffix or 'no suffix'!r}",
                        exit_code=2)  # fmt: skip
    if not path.parent.is_dir():
        raise UserError(f"--timeline {path}: no folder {path.parent}", exit_code=2)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError("--timeline needs matplotlib: pip install 'intentcam[eval]'",
                        exit_code=2) from None  # fmt: skip


def status(event: dict[str, Any]) -> str:
    """``matched``, or for an unmatched event ``missed`` (a label) or ``false`` (a detection)."""
    if event["matched"]:
        return "matched"
    return "missed" if event["source"] == "label" else "false"


def slots(events: list[dict[str, Any]]) -> list[int]:
    """For each event (by ``start``, ``end``), the sub-lane it is drawn in: the first one free
    when it starts, so events that overlap in time (two people at one shelf) sit side by side
    instead of one hiding the other."""
    ends: list[float] = []  # when each sub-lane is free again
    chosen = [0] * len(events)
    for index in sorted(range(len(events)), key=lambda i: events[i]["start"]):
        free = next((i for i, end in enumerate(ends) if end <= events[index]["start"]), len(ends))
        ends[free:free + 1] = [events[index]["end"]]  # fmt: skip
        chosen[index] = free
    return chosen


def timeline(clips: list[dict[str, Any]], fmt: str = "svg") -> bytes:
    """The picture of ``clips`` (the per-clip rows of :func:`intentcam.evaluation.shelf.score`)
    as SVG or PNG bytes. In the SVG every bar has the id ``STATUS-SOURCE-KIND-N``, and the
    labeller's person written on a label bar ``person-STATUS-SOURCE-KIND-N``."""
    lanes = [(row, kind) for row in clips for kind in KINDS]

    def draw(figure: Any, axes: Any) -> None:
        from matplotlib.colors import to_rgba
        from matplotlib.patches import Patch

        numbered: dict[str, int] = {}
        for lane, (row, kind) in enumerate(lanes):
            y = len(lanes) - 1 - lane
            if kind == KINDS[0] and lane:
                axes.axhline(y + 0.5, color="#999999", linewidth=0.6)
            events = [e for e in row["events"] if e["kind"] == kind]
            found = [e for e in events if e["source"] == "found"]
            slot = dict(zip(map(id, found), slots(found)))
            height = FOUND_HEIGHT / max(len(set(slot.values())), 1)
            for event in events:
                state = status(event)
                key = f"{state}-{event['source']}-{kind}"
                numbered[key] = numbered.get(key, -1) + 1
                width = max(event["end"] - event["start"], 0.02)
                if event["source"] == "label":
                    bars = axes.barh(y, width, left=event["start"], height=0.8,
                                     color=to_rgba(COLOURS[kind], LIGHT),
                                     edgecolor=MISS if state == "missed" else "none",
                                     linewidth=1.6)  # fmt: skip
                else:
                    low = y - FOUND_HEIGHT / 2 + slot[id(event)] * height
                    bars = axes.barh(low, width, left=event["start"], height=height,
                                     align="edge", edgecolor="white", linewidth=0.4,
                                     color=MISS if state == "false" else COLOURS[kind])  # fmt: skip
                bars.patches[0].set_gid(f"{key}-{numbered[key]}")
                if "person" in event:  # the labeller's own name for whose event it was
                    axes.text(event["start"] + 0.03, y, str(event["person"]), fontsize=6,
                              va="center", gid=f"person-{key}-{numbered[key]}",
                              bbox={"facecolor": "white", "alpha": 0.8, "pad": 0.6,
                                    "linewidth": 0})  # fmt: skip
        axes.set_yticks(
            [len(lanes) - 1 - lane for lane in range(len(lanes))],
            [
                f"{row['clip']} ({row['split']})  {kind}" if kind == KINDS[0] else kind
                for row, kind in lanes
            ],  # fmt: skip
            fontsize=7,
        )
        axes.set_ylim(-0.5, len(lanes) - 0.5)
        axes.set_xlim(0, max((row["seconds"] for row in clips), default=1.0))
        axes.set_xlabel("seconds into the clip")
        figure.legend(
            handles=[
                Patch(color=COLOURS["reach"], alpha=LIGHT, label="labelled"),
                Patch(color=COLOURS["reach"], label="found (start within 0.5 s of a label)"),
                Patch(facecolor="white", edgecolor=MISS, linewidth=1.6, label="missed label"),
                Patch(color=MISS, label="false detection"),
            ],
            loc="outside lower center", fontsize=7, ncols=4,
        )  # fmt: skip
        axes.set_title("Shelf interactions: hand labels against what intentcam found", fontsize=9)

    return figure_bytes(draw, size=(10.0, 1.4 + LANE_INCHES * len(lanes)), fmt=fmt)


def write_timeline(clips: list[dict[str, Any]], path: Path) -> None:
    """:func:`timeline` of ``clips`` written to ``path`` (SVG or PNG by its suffix)."""
    data = timeline(clips, path.suffix.lower().lstrip("."))
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise UserError(f"--timeline {path}: cannot write ({exc.strerror or exc})",
                        exit_code=1) from None  # fmt: skip

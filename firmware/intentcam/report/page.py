"""The day as one self-contained HTML page: a chart above each table, CSV files, heatmaps.

Charts are drawn by matplotlib's Agg backend as SVG and heatmaps as PNG, both embedded as data
URIs, as are the CSV downloads: ``index.html`` opens anywhere, offline, with no script at all.
The same CSV files are written next to it, and ``report.json`` holds every table for machines.
Heatmaps are drawn on each camera's background plate (``intentcam preview --plate``: the median
of many frames with anyone still visible blurred, never a live frame) and, for cameras with a
floor homography, stitched on the floor plan in track-seconds per square metre.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from intentcam.charts import figure_bytes
from intentcam.errors import UserError
from intentcam.report.day import SLOT_MINUTES, CameraHeat, Day, Table

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:64rem;
 color:#1d2433;padding:0 1rem}
h1{margin-bottom:.2rem}.sub{color:#5b6475;margin-top:0}
.cards{display:flex;flex-wrap:wrap;gap:1rem;margin:1.5rem 0}
.card{border:1px solid #d8dde6;border-radius:.5rem;padding:.8rem 1.2rem;min-width:9rem}
.card b{display:block;font-size:1.6rem}
section{margin:2.5rem 0}figure{margin:0}figure img{max-width:100%;height:auto}
table{border-collapse:collapse;font-size:.85rem;margin-top:.8rem}
th,td{border:1px solid #d8dde6;padding:.2rem .5rem;text-align:right}
th:first-child,td:first-child{text-align:left}.note{color:#5b6475;font-size:.85rem}
.scroll{overflow-x:auto}
"""


@dataclass(frozen=True)
class FloorPlan:
    """The store's floor plan image and where floor metres fall on it."""

    image: Path
    pixels_per_metre: float
    origin_px: tuple[float, float] = (0.0, 0.0)


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _csv_text(table: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows(table.rows)
    return out.getvalue()


def footfall_chart(day: Day) -> bytes:
    rows = day.footfall.rows
    hours = np.arange(24)
    ins, outs = [r[-2] for r in rows], [r[-1] for r in rows]

    def draw(figure: Any, axes: Any) -> None:
        axes.bar(hours - 0.2, ins, 0.4, label="in", color="#2f6fdf")
        axes.bar(hours + 0.2, outs, 0.4, label="out", color="#f0a030")
        if day.peak_hour is not None:
            axes.annotate("peak", (day.peak_hour - 0.2, ins[day.peak_hour]), ha="center",
                          xytext=(0, 4), textcoords="offset points")  # fmt: skip
        axes.set_xticks(hours, [f"{h:02d}" for h in hours])
        axes.set_xlabel("hour (local time)")
        axes.set_ylabel("people")
        axes.legend(frameon=False)

    return figure_bytes(draw)


def alerts_chart(day: Day) -> bytes:
    """The day's staff alerts per hour, stacked by zone and rule."""
    table = day.alerts
    hours = np.arange(24)
    columns = table.columns[1:-1]

    def draw(figure: Any, axes: Any) -> None:
        from matplotlib.ticker import MaxNLocator  # loaded with the figure, not the module

        below = np.zeros(24)
        for index, name in enumerate(columns, start=1):
            values = np.array([row[index] for row in table.rows], dtype=float)
            axes.bar(hours, values, 0.8, bottom=below, label=name)
            below += values
        axes.set_xticks(hours, [f"{h:02d}" for h in hours])
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))  # no half alerts
        axes.set_xlabel("hour (local time)")
        axes.set_ylabel("alerts")
        axes.legend(frameon=False)

    return figure_bytes(draw)


def occupancy_chart(day: Day) -> bytes:
    rows = day.occupancy.rows
    starts = [int(r[0][:2]) + int(r[0][3:]) / 60 for r in rows]
    slot = SLOT_MINUTES / 60

    def draw(figure: Any, axes: Any) -> None:
        axes.bar(starts, [r[2] for r in rows], slot * 0.9, align="edge", color="#f3b3a6",
                 label="max")  # fmt: skip
        axes.bar(starts, [r[1] for r in rows], slot * 0.9, align="edge", color="#c23b22",
                 label="mean")  # fmt: skip
        # The hours the data covers (at least two), so a short day is not a sliver.
        first = int(min(starts, default=8.0))
        last = max(int(np.ceil(max(starts, default=18.0) + slot)), first + 2)
        axes.set_xlim(first, last)
        axes.set_xticks(range(first, last + 1), [f"{h:02d}:00" for h in range(first, last + 1)])
        axes.set_xlabel("local time")
        axes.set_ylabel("people in the store")
        axes.legend(frameon=False)

    return figure_bytes(draw)


def bars_chart(table: Table, columns: list[str], xlabel: str) -> bytes:
    """Horizontal grouped bars of ``columns`` per row (a blank cell, suppressed, draws nothing)."""
    labels = [str(row[0]) for row in table.rows]
    index = {name: table.columns.index(name) for name in columns}
    height = max(1.6, 0.5 + 0.45 * len(labels) * max(len(columns), 1) ** 0.5)

    def draw(figure: Any, axes: Any) -> None:
        bar = 0.8 / max(len(columns), 1)
        for offset, name in enumerate(columns):
            values = [row[index[name]] if row[index[name]] != "" else 0 for row in table.rows]
            positions = np.arange(len(labels)) + (offset - (len(columns) - 1) / 2) * bar
            axes.barh(positions, values, bar, label=name)
        axes.set_yticks(np.arange(len(labels)), labels)
        axes.invert_yaxis()  # the table's order, top to bottom
        axes.set_xlabel(xlabel)
        if labels and columns:
            axes.legend(frameon=False, loc="best")
        if not labels:
            axes.text(0.5, 0.5, "nothing to show", ha="center", transform=axes.transAxes)

    return figure_bytes(draw, size=(9.0, height))


def _read_image(path: Path, option: str) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"{option} {path}: not a readable image", exit_code=2)
    return np.ascontiguousarray(image[:, :, ::-1])  # BGR -> RGB


def camera_heat_png(heat: CameraHeat, plate: Path | None) -> bytes:
    """The camera's day heatmap over its plate (or a plain 16:9 background), as PNG."""
    background = _read_image(plate, "--plate") if plate is not None else None
    height, width = background.shape[:2] if background is not None else (9, 16)

    def draw(figure: Any, axes: Any) -> None:
        rows, columns = heat.seconds.shape
        extent = (0.0, float(width), float(height), 0.0)  # the picture's own aspect
        if background is not None:
            axes.imshow(background, extent=extent)
        else:
            axes.imshow(np.full((height, width, 3), 235, dtype=np.uint8), extent=extent)
        masked = np.ma.masked_less_equal(heat.seconds, 0.0)
        shown = axes.imshow(masked, extent=extent, cmap="turbo", alpha=0.55,
                            interpolation="nearest")  # fmt: skip
        figure.colorbar(shown, ax=axes, label="track-seconds per cell", shrink=0.8)
        axes.set_axis_off()
        axes.set_title(f"{heat.device}: {heat.windows} window(s), grid {columns}x{rows}")

    return figure_bytes(draw, size=(8.0, 8.0 * height / width * 0.9 + 0.6), fmt="png")


def floor_heat_png(heats: list[CameraHeat], plan: FloorPlan) -> tuple[bytes, np.ndarray]:
    """All floor-calibrated cameras' track-seconds per m², stitched on the floor plan (PNG), and
    the stitched density (plan pixels)."""
    import cv2

    image = _read_image(plan.image, "--floor-plan")
    height, width = image.shape[:2]
    density = np.zeros((height, width), dtype=np.float64)
    for heat in heats:
        per_m2 = heat.per_square_metre
        assert per_m2 is not None and heat.extent_m is not None
        x0, y0 = plan.origin_px
        w_px = heat.extent_m[0] * plan.pixels_per_metre
        h_px = heat.extent_m[1] * plan.pixels_per_metre
        cols = int(np.clip(round(x0 + w_px), 0, width)) - int(np.clip(round(x0), 0, width))
        rows = int(np.clip(round(y0 + h_px), 0, height)) - int(np.clip(round(y0), 0, height))
        if cols <= 0 or rows <= 0:
            continue
        full = cv2.resize(per_m2, (max(int(round(w_px)), 1), max(int(round(h_px)), 1)),
                          interpolation=cv2.INTER_NEAREST)  # fmt: skip
        left, top = max(-int(round(x0)), 0), max(-int(round(y0)), 0)
        x, y = int(np.clip(round(x0), 0, width)), int(np.clip(round(y0), 0, height))
        density[y : y + rows, x : x + cols] += full[top : top + rows, left : left + cols]

    def draw(figure: Any, axes: Any) -> None:
        axes.imshow(image)
        masked = np.ma.masked_less_equal(density, 0.0)
        shown = axes.imshow(masked, cmap="turbo", alpha=0.55)
        figure.colorbar(shown, ax=axes, label="track-seconds per m²", shrink=0.8)
        axes.set_axis_off()
        axes.set_title(f"floor plan: {len(heats)} camera(s)")

    return figure_bytes(draw, size=(8.0, 5.5), fmt="png"), density


#: The sentiment slots drawn (the expression ones only when some zone has them).
SENTIMENT_CHART = ["engagement", "approach", "hesitation", "valence", "arousal"]


def _filled(table: Table, columns: list[str]) -> list[str]:
    """The ``columns`` that have a value in at least one row."""
    return [c for c in columns if any(row[table.columns.index(c)] != "" for row in table.rows)]


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in table.rows
    )
    csv_uri = _data_uri(_csv_text(table).encode("utf-8"), "text/csv")
    return (
        f'<div class="scroll"><table id="table-{table.name}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
        f'<p class="note">{html.escape(table.note)} '
        f'<a download="{table.name}.csv" href="{csv_uri}">CSV</a></p>'
    )


def _section(table: Table, chart: bytes | None, mime: str = "image/svg+xml") -> str:
    figure = (
        f'<figure><img class="chart" alt="{html.escape(table.title)}" '
        f'src="{_data_uri(chart, mime)}"></figure>'
        if chart is not None
        else ""
    )
    return f'<section id="{table.name}"><h2>{html.escape(table.title)}</h2>{figure}{_table_html(table)}</section>'


def _cards(day: Day) -> str:
    total_in = sum(t["in"] for t in day.totals.values())
    total_out = sum(t["out"] for t in day.totals.values())
    peak = f"{day.peak_hour:02d}:00" if day.peak_hour is not None else "-"
    busiest = max(day.occupancy.rows, key=lambda r: r[2], default=None)
    cards = [("visitors in", total_in), ("out", total_out), ("peak hour", peak),
             ("max in store", f"{busiest[2]} at {busiest[0]}" if busiest else "-")]  # fmt: skip
    if day.alert_count:
        cards.append(("staff alerts", day.alert_count))
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><b>{html.escape(str(value))}</b>{html.escape(label)}</div>'
            for label, value in cards
        )
        + "</div>"
    )


def write_report(
    day: Day,
    out: Path,
    *,
    plates: dict[str, Path] | None = None,
    floor_plan: FloorPlan | None = None,
) -> dict[str, Any]:
    """Write ``index.html``, one CSV per table and ``report.json`` into ``out``; returns the
    JSON summary."""
    plates = plates or {}
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"--out {out}: cannot create ({exc.strerror or exc})", exit_code=2
        ) from None
    sections = [
        _section(day.footfall, footfall_chart(day)),
        _section(day.occupancy, occupancy_chart(day)),
        _section(day.zones, bars_chart(day.zones, ["stay_p50_s", "stay_p90_s"], "seconds")),
        *(
            [
                _section(
                    day.shelves,
                    bars_chart(day.shelves, ["reach", "inspect", "put_back"], "interactions"),
                )
            ]
            if day.shelves.rows
            else []
        ),  # fmt: skip
        *([_section(day.alerts, alerts_chart(day))] if day.alert_count else []),
        _section(day.intent, bars_chart(day.intent, ["engagement", "approach_index"], "mean")),
        _section(
            day.sentiment,
            bars_chart(day.sentiment, _filled(day.sentiment, SENTIMENT_CHART), "mean"),
        ),
    ]
    heat_html = [f'<section id="heatmaps"><h2>{html.escape(day.heat_table().title)}</h2>']
    for heat in day.heat:
        if heat.space == "image_norm":
            png = camera_heat_png(heat, plates.get(heat.device))
            heat_html.append(f'<figure><img class="chart heat" alt="heatmap of {html.escape(heat.device)}" '
                             f'src="{_data_uri(png, "image/png")}"></figure>')  # fmt: skip
    floor = [h for h in day.heat if h.space == "floor_m" and h.extent_m is not None]
    if floor and floor_plan is not None:
        png, _ = floor_heat_png(floor, floor_plan)
        heat_html.append(f'<figure><img class="chart heat" alt="heatmap on the floor plan" '
                         f'src="{_data_uri(png, "image/png")}"></figure>')  # fmt: skip
    heat_html.append(_table_html(day.heat_table()) + "</section>")
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    title = f"{day.site}: {day.date.isoformat()}"
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>intentcam report {html.escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f'<p class="sub">{len(day.devices)} camera(s): {html.escape(", ".join(day.devices))}; '
        f"{day.windows} counts window(s); times in {html.escape(day.tz)}; generated {generated}</p>"
        f"{_cards(day)}{''.join(sections)}{''.join(heat_html)}</body></html>"
    )
    (out / "index.html").write_text(page, encoding="utf-8")
    tables = day.tables()
    for table in tables:
        (out / f"{table.name}.csv").write_text(_csv_text(table), encoding="utf-8")
    for heat in day.heat:
        np.savetxt(out / f"heatmap_{heat.device}.csv", heat.seconds, fmt="%.1f", delimiter=",")
    summary = {
        "site": day.site,
        "date": day.date.isoformat(),
        "tz": day.tz,
        "devices": day.devices,
        "windows": day.windows,
        "totals": day.totals,
        "peak_hour": day.peak_hour,
        "tables": {t.name: {"columns": t.columns, "rows": t.rows} for t in tables},
        "index": str(out / "index.html"),
    }
    (out / "report.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary

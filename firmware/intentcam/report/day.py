"""One site's day as tables: what the report shows, computed from the messages alone.

Every number comes from published messages, so the report can be recomputed by anyone holding
them: footfall from ``counts`` line totals, store occupancy from ``counts.store_occupancy``
(summed over the site's cameras, each at its latest value), visits from ``counts`` zone entries,
time of stay and intent per zone from the ``sessions`` that visited it, sentiment from the zone
vectors the cameras published (already k-suppressed there: a window with fewer than k sessions
has none), heatmaps from ``heatmap`` grids, staff alerts from ``alert`` messages. Windows belong
to the local day of their start, alerts to that of their time.

Lines and zones are named ``device/id`` unless a names file maps them to store-level names; two
doors mapped to one name add up to one store footfall.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date as Date
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (Jetson)
    import tomli as tomllib

from intentcam.aggregator import percentile
from intentcam.analytics.shelf import KINDS
from intentcam.errors import UserError
from intentcam.records import wall_of
from intentcam.sentiment.vector import decode
from intentcam.telemetry.messages import decode_heatmap

#: Occupancy is summarised per this many minutes.
SLOT_MINUTES = 15


@dataclass(frozen=True)
class Table:
    """One table of the report; also written as ``<name>.csv``."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""


@dataclass(frozen=True)
class Names:
    """Store-level names of ``device/line`` and ``device/zone`` (unmapped ones keep theirs)."""

    lines: dict[str, str] = field(default_factory=dict)
    zones: dict[str, str] = field(default_factory=dict)

    def line(self, device: str, line: str) -> str:
        return self.lines.get(f"{device}/{line}", f"{device}/{line}")

    def zone(self, device: str, zone: str) -> str:
        return self.zones.get(f"{device}/{zone}", f"{device}/{zone}")

    @classmethod
    def load(cls, path: Path | None) -> Names:
        """A TOML file with ``[lines]`` and ``[zones]`` tables of ``"device/id" = "name"``."""
        if path is None:
            return cls()
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"--names {path}: cannot read ({exc})", exit_code=2) from None
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"--names {path}: not TOML ({exc})", exit_code=2) from None
        tables = {}
        for section in ("lines", "zones"):
            table = data.get(section, {})
            if not isinstance(table, dict) or not all(
                isinstance(k, str) and "/" in k and isinstance(v, str) and v
                for k, v in table.items()
            ):
                raise UserError(
                    f'--names {path}: [{section}] must map "device/id" to a name', exit_code=2
                )
            tables[section] = table
        unknown = sorted(set(data) - {"lines", "zones"})
        if unknown:
            raise UserError(f"--names {path}: unknown section(s) {', '.join(unknown)}", exit_code=2)
        return cls(tables["lines"], tables["zones"])


@dataclass
class CameraHeat:
    """A camera's heatmap summed over the day."""

    device: str
    space: str
    seconds: np.ndarray
    windows: int
    extent_m: tuple[float, float] | None = None

    @property
    def per_square_metre(self) -> np.ndarray | None:
        """Track-seconds per square metre of each cell (floor grids only)."""
        if self.extent_m is None:
            return None
        rows, columns = self.seconds.shape
        area = (self.extent_m[0] / columns) * (self.extent_m[1] / rows)
        return self.seconds / area


@dataclass
class Day:
    """The report's content; see the module docstring."""

    site: str
    date: Date
    tz: str
    devices: list[str]
    footfall: Table
    totals: dict[str, dict[str, int]]
    peak_hour: int | None
    occupancy: Table
    zones: Table
    shelves: Table
    alerts: Table
    intent: Table
    sentiment: Table
    heat: list[CameraHeat]
    windows: int

    def tables(self) -> list[Table]:
        return [self.footfall, self.occupancy, self.zones, self.shelves, self.alerts,
                self.intent, self.sentiment, self.heat_table()]  # fmt: skip

    @property
    def alert_count(self) -> int:
        """Staff alerts raised that day, over every zone and rule."""
        return sum(row[-1] for row in self.alerts.rows)

    def heat_table(self) -> Table:
        rows = []
        for heat in self.heat:
            density = heat.per_square_metre
            rows.append([
                heat.device,
                heat.space,
                heat.windows,
                round(float(heat.seconds.sum()), 1),
                round(float(heat.seconds.max(initial=0.0)), 1),
                round(float(density.max(initial=0.0)), 1) if density is not None else "",
            ])  # fmt: skip
        return Table(
            "heatmaps",
            "Heatmaps: track-seconds per camera",
            [
                "camera",
                "space",
                "windows",
                "track_seconds",
                "hottest_cell_s",
                "hottest_cell_s_per_m2",
            ],  # fmt: skip
            rows,
            "Cells seen by fewer than k people were zeroed on the camera.",
        )


def _local(ts: str, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(wall_of(ts), zone)


def pick_site(messages: list[dict[str, Any]], site: str | None) -> str:
    """The site to report: ``site`` if given (and present), else the only one in the data."""
    sites = sorted({str(m.get("site")) for m in messages})
    if site is not None:
        if site not in sites:
            raise UserError(f"--site {site}: no messages from it (found: {', '.join(sites) or 'none'})",
                            exit_code=2)  # fmt: skip
        return site
    if len(sites) != 1:
        raise UserError(
            f"the data holds {len(sites)} sites ({', '.join(sites) or 'none'}): choose one with --site",
            exit_code=2,
        )
    return sites[0]


def unique(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each message once: QoS 1 may deliver twice, and recordings overlap (same device, type and
    seq is the same message)."""
    seen: set[tuple[Any, ...]] = set()
    kept = []
    for message in messages:
        key = (
            message.get("device"),
            message.get("type"),
            message.get("boot_id"),
            message.get("seq"),
        )
        if message.get("seq") is None or key not in seen:
            seen.add(key)
            kept.append(message)
    return kept


def days_in(messages: list[dict[str, Any]], tz: str) -> list[Date]:
    """The local days that have ``counts`` windows, oldest first."""
    zone = ZoneInfo(tz)
    return sorted(
        {_local(m["window"]["start"], zone).date() for m in messages if m["type"] == "counts"}
    )


def build_day(
    messages: list[dict[str, Any]],
    day: Date,
    tz: str,
    *,
    site: str,
    names: Names | None = None,
    long_visit_s: float = 60.0,
    k_min: int = 3,
) -> Day:
    """The tables of one site's local ``day`` (time zone ``tz``)."""
    names = names or Names()
    zone = ZoneInfo(tz)
    messages = [m for m in unique(messages) if m.get("site") == site]
    of_day = [
        m for m in messages
        if "window" in m and _local(m["window"]["start"], zone).date() == day
    ]  # fmt: skip
    counts = sorted(
        (m for m in of_day if m["type"] == "counts"), key=lambda m: m["window"]["start"]
    )
    sessions = [s for m in of_day if m["type"] == "sessions" for s in _named(m, names)]
    alerts = [m for m in messages if m["type"] == "alert" and not m.get("test")
              and _local(m["at"], zone).date() == day]  # fmt: skip
    footfall, totals, peak = _footfall(counts, names, zone)
    return Day(
        site=site,
        date=day,
        tz=tz,
        devices=sorted({m["device"] for m in of_day}),
        footfall=footfall,
        totals=totals,
        peak_hour=peak,
        occupancy=_occupancy(counts, zone),
        zones=_zones(counts, sessions, names, long_visit_s, k_min),
        shelves=_shelves(counts, names),
        alerts=_alerts(alerts, names, zone),
        intent=_intent(sessions, k_min),
        sentiment=_sentiment(counts, names),
        heat=_heat([m for m in of_day if m["type"] == "heatmap"]),
        windows=len(counts),
    )


def _named(message: dict[str, Any], names: Names) -> list[dict[str, Any]]:
    """The message's sessions with their zones under store-level names."""
    device = message["device"]
    named = []
    for session in message["sessions"]:
        zones: dict[str, dict[str, float]] = defaultdict(lambda: {"visits": 0, "dwell_s": 0.0})
        for zone_id, stats in session["zones"].items():
            entry = zones[names.zone(device, zone_id)]
            entry["visits"] += stats["visits"]
            entry["dwell_s"] += stats["dwell_s"]
        named.append({**session, "zones": dict(zones)})
    return named


def _footfall(
    counts: list[dict[str, Any]], names: Names, zone: ZoneInfo
) -> tuple[Table, dict[str, dict[str, int]], int | None]:
    by_hour: dict[int, dict[str, dict[str, int]]] = defaultdict(
        lambda: defaultdict(lambda: {"in": 0, "out": 0})
    )
    for message in counts:
        hour = _local(message["window"]["start"], zone).hour
        for line_id, crossed in message["lines"].items():
            line = by_hour[hour][names.line(message["device"], line_id)]
            line["in"] += crossed["in"]
            line["out"] += crossed["out"]
    lines = sorted({line for hour in by_hour.values() for line in hour})
    totals = {line: {"in": sum(by_hour[h][line]["in"] for h in by_hour),
                     "out": sum(by_hour[h][line]["out"] for h in by_hour)} for line in lines}  # fmt: skip
    rows: list[list[Any]] = []
    entering = []
    for hour in range(24):
        ins = [by_hour[hour][line]["in"] if hour in by_hour else 0 for line in lines]
        outs = [by_hour[hour][line]["out"] if hour in by_hour else 0 for line in lines]
        rows.append([f"{hour:02d}:00"] + [v for pair in zip(ins, outs) for v in pair]
                    + [sum(ins), sum(outs)])  # fmt: skip
        entering.append(sum(ins))
    peak = int(np.argmax(entering)) if max(entering, default=0) > 0 else None
    columns = ["hour"] + [f"{line} {d}" for line in lines for d in ("in", "out")] + ["in", "out"]
    note = "Crossings per local hour; 'in' and 'out' are the sums over all lines."
    return Table("footfall_by_hour", "Footfall by hour", columns, rows, note), totals, peak


def _occupancy(counts: list[dict[str, Any]], zone: ZoneInfo) -> Table:
    """The site's store occupancy (the cameras' values summed, each at its latest) per slot."""
    latest: dict[str, int] = {}
    slots: dict[int, list[int]] = defaultdict(list)
    for message in sorted(counts, key=lambda m: m["window"]["end"]):
        latest[message["device"]] = message["store_occupancy"]
        start = _local(message["window"]["start"], zone)
        minute = start.hour * 60 + start.minute  # the slot of the window's start
        slots[minute // SLOT_MINUTES].append(sum(latest.values()))
    rows = [
        [f"{slot * SLOT_MINUTES // 60:02d}:{slot * SLOT_MINUTES % 60:02d}",
         round(float(np.mean(values)), 1), int(max(values))]
        for slot, values in sorted(slots.items())
    ]  # fmt: skip
    return Table(
        "occupancy",
        f"Store occupancy per {SLOT_MINUTES} minutes",
        ["from", "mean", "max"],
        rows,
        "People in the store (in minus out over the door lines since the daily reset), over the "
        "windows that began in each quarter hour.",
    )


def _zones(
    counts: list[dict[str, Any]],
    sessions: list[dict[str, Any]],
    names: Names,
    long_visit_s: float,
    k_min: int,
) -> Table:
    visits: dict[str, int] = defaultdict(int)
    for message in counts:
        for zone_id, stats in message["zones"].items():
            visits[names.zone(message["device"], zone_id)] += stats["entries"]
    stays: dict[str, list[float]] = defaultdict(list)
    for session in sessions:
        for zone_name, stats in session["zones"].items():
            stays[zone_name].append(stats["dwell_s"])
    rows = []
    for zone_name in sorted(set(visits) | set(stays)):
        dwell = stays.get(zone_name, [])
        if len(dwell) >= k_min:
            long_share = round(sum(d > long_visit_s for d in dwell) / len(dwell), 3)
            rows.append([zone_name, visits[zone_name], len(dwell), round(percentile(dwell, 50), 1),
                         round(percentile(dwell, 90), 1), long_share])  # fmt: skip
        else:
            rows.append([zone_name, visits[zone_name], len(dwell), "", "", ""])
    return Table(
        "zones",
        "Zones: visits and time of stay",
        ["zone", "visits", "visitors", "stay_p50_s", "stay_p90_s", f"share_over_{long_visit_s:g}s"],
        rows,
        f"Visits are zone entries; time of stay is each visitor's total in the zone (sessions of "
        f"at least the cameras' min_session_s). Blank: fewer than k = {k_min} visitors.",
    )


SHELF_COUNTS = ("visits", *KINDS)


def _shelves(counts: list[dict[str, Any]], names: Names) -> Table:
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for message in counts:
        for zone_id, stats in message["zones"].items():
            shelf = stats.get("interactions")
            if shelf is None:
                continue
            total = totals[names.zone(message["device"], zone_id)]
            for key in SHELF_COUNTS:
                total[key] += shelf[key]
            if "engagement" in shelf:  # windows with at least k visits
                total["judged"] += shelf["visits"]
                total["engaged"] += shelf["engaged_visits"]
    rows = [
        [name, *(total[key] for key in SHELF_COUNTS),
         round(total["engaged"] / total["judged"], 3) if total["judged"] else ""]
        for name, total in sorted(totals.items())
    ]  # fmt: skip
    return Table(
        "shelves",
        "Shelves: hands at the products",
        ["shelf", *SHELF_COUNTS, "engagement"],
        rows,
        "Reaches, inspects (something held away after a reach) and put-backs (a reach while "
        "inspecting) at each shelf zone: what hands did, never what was bought. Engagement: the "
        "share of visits with at least one interaction, over the windows with at least k visits "
        "(blank: none had).",
    )


def _alerts(alerts: list[dict[str, Any]], names: Names, zone: ZoneInfo) -> Table:
    """Alerts per local hour, one column per zone and rule that raised any."""
    by_hour: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for message in alerts:
        where = f"{names.zone(message['device'], message['zone'])} {message['rule']}"
        by_hour[_local(message["at"], zone).hour][where] += 1
    columns = sorted({where for hour in by_hour.values() for where in hour})
    rows = [
        [f"{hour:02d}:00", *(by_hour[hour][c] for c in columns), sum(by_hour[hour].values())]
        for hour in range(24)
    ]
    return Table(
        "alerts",
        "Staff alerts by hour",
        ["hour", *columns, "alerts"],
        rows,
        "Alerts raised by the cameras' staff-assist rules ([alerts]: a shopper lingering and "
        "reaching with no staff near, a long queue), per local hour, by zone and rule. Alerts are "
        "sent the moment they fire and never spooled to disk: a recording made while a camera was "
        "cut off from the broker for longer than alerts.deliver_within_s lacks them. Test alerts "
        "(cmd/test_alert) are left out.",
    )


def _intent(sessions: list[dict[str, Any]], k_min: int) -> Table:
    by_zone: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for session in sessions:
        for zone_name in session["zones"]:
            by_zone[zone_name].append(session)
    rows = []
    for zone_name, visitors in sorted(by_zone.items()):
        if len(visitors) < k_min:
            rows.append([zone_name, len(visitors), "", "", ""])
            continue
        rows.append([
            zone_name,
            len(visitors),
            round(float(np.mean([s["engagement"] for s in visitors])), 3),
            round(float(np.mean([s["approach_index"] for s in visitors])), 3),
            round(float(np.mean([s["hesitation_per_min"] for s in visitors])), 2),
        ])  # fmt: skip
    return Table(
        "intent",
        "Intent per zone",
        ["zone", "visitors", "engagement", "approach_index", "hesitation_per_min"],
        rows,
        f"Means over the visitors' sessions (docs/analytics.md). Blank: fewer than k = {k_min}.",
    )


SENTIMENT_SLOTS = ("engagement", "approach", "hesitation", "valence", "arousal", "happy", "neutral")


def _sentiment(counts: list[dict[str, Any]], names: Names) -> Table:
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    weights: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    sessions: dict[str, int] = defaultdict(int)
    for message in counts:
        for zone_id, stats in message["zones"].items():
            vector = stats.get("sentiment")
            if vector is None:
                continue
            name = names.zone(message["device"], zone_id)
            sessions[name] += vector["sessions"]
            for slot, value in decode(vector["v"]).items():
                if slot in SENTIMENT_SLOTS and value is not None:
                    weight = (
                        vector["sessions"]
                        if slot in SENTIMENT_SLOTS[:3]
                        else vector["expression_sessions"]
                    )
                    sums[name][slot] += value * weight
                    weights[name][slot] += weight
    rows = [
        [name, sessions[name]]
        + [round(sums[name][s] / weights[name][s], 3) if weights[name][s] else ""
           for s in SENTIMENT_SLOTS]
        for name in sorted(sessions)
    ]  # fmt: skip
    return Table(
        "sentiment",
        "Sentiment per zone (intentcam.sentiment.v1)",
        ["zone", "sessions", *SENTIMENT_SLOTS],
        rows,
        "Session-weighted means of the zone vectors the cameras published; a camera publishes a "
        "zone's vector only for windows with at least k sessions, so zones below that are absent. "
        "Expression slots (valence .. neutral) are blank unless expression inference is on.",
    )


def _heat(heatmaps: list[dict[str, Any]]) -> list[CameraHeat]:
    by_device: dict[str, CameraHeat] = {}
    for message in sorted(heatmaps, key=lambda m: m["window"]["start"]):
        grid = decode_heatmap(message)
        extent = tuple(message["extent_m"]) if "extent_m" in message else None
        current = by_device.get(message["device"])
        if (
            current is None
            or current.seconds.shape != grid.shape
            or current.space != message["space"]
        ):
            # A new grid (first, or the camera was reconfigured): the day's latest layout wins.
            by_device[message["device"]] = CameraHeat(message["device"], message["space"], grid, 1,
                                                      extent)  # type: ignore[arg-type]  # fmt: skip
        else:
            current.seconds = current.seconds + grid
            current.windows += 1
    return [by_device[device] for device in sorted(by_device)]

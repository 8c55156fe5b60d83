"""Lines and zones set live by ``set_zones``, kept in the state dir so they survive restarts."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from intentcam.config import (
    LineConfig,
    Settings,
    ZoneConfig,
    alert_zone_problem,
    check_unique_ids,
    describe_validation_error,
)
from intentcam.durable import atomic_write
from intentcam.pose.build import pose_model_problem

log = logging.getLogger(__name__)
FILE_NAME = "zones.json"


class Geometry(BaseModel):
    """The payload of ``set_zones`` and the content of ``zones.json``: both lists required."""

    model_config = ConfigDict(extra="forbid")
    lines: list[LineConfig]
    zones: list[ZoneConfig]

    @model_validator(mode="after")
    def _unique(self) -> Geometry:
        check_unique_ids(self.lines, self.zones)
        return self


@dataclass(frozen=True)
class GeometryLimits:
    """How much geometry a command may set ([telemetry] max_zones, max_lines, max_points)."""

    zones: int
    lines: int
    points: int

    def problem(self, geometry: Geometry) -> str | None:
        if len(geometry.zones) > self.zones:
            return f"zones: {len(geometry.zones)} given, at most {self.zones}"
        if len(geometry.lines) > self.lines:
            return f"lines: {len(geometry.lines)} given, at most {self.lines}"
        shapes = [("lines", i, line.points) for i, line in enumerate(geometry.lines)]
        shapes += [("zones", i, zone.points) for i, zone in enumerate(geometry.zones)]
        for kind, index, points in shapes:
            if len(points) > self.points:
                return f"{kind}.{index}.points: {len(points)} points, at most {self.points}"
        return None


def parse_geometry(
    data: Any, limits: GeometryLimits | None = None
) -> tuple[Geometry | None, str | None]:
    """Validate ``set_zones`` data; returns the geometry or a one-line problem."""
    try:
        geometry = Geometry.model_validate(data)
    except ValidationError as exc:
        return None, "; ".join(describe_validation_error(exc))
    problem = limits.problem(geometry) if limits is not None else None
    return (None, problem) if problem else (geometry, None)


def live_geometry_refusal(settings: Settings, geometry: Geometry) -> str | None:
    """Why the running daemon must not switch to ``geometry`` (``set_zones``, the calibrate
    page's Save), or ``None``: a zone an alert rule names would go or change kind, or a shelf
    zone would come without the pose model it needs installed."""
    clash = alert_zone_problem(settings.alerts, geometry.zones)
    if clash:
        return f"{clash} (change [alerts] first)"
    return shelf_model_refusal(settings, geometry.zones)


def shelf_model_refusal(settings: Settings, zones: list[ZoneConfig]) -> str | None:
    """Why these zones cannot be counted with live: a shelf zone without the pose model
    installed (it would count no hands: the shelf interactions would switch off at the first
    shopper there, and at every start after), or ``None``: refused while whoever sets the zone
    is there to read why."""
    shelves = [zone.id for zone in zones if zone.kind == "shelf"]
    problem = pose_model_problem(settings) if shelves else None
    if problem:
        return f"shelf zone {shelves[0]!r} needs the pose model: {problem}"
    return None


class GeometryStore:
    """``<state_dir>/zones.json``, replaced atomically (write a temp file, fsync, rename)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME

    def load(self) -> Geometry | None:
        if not self.path.exists():
            return None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.error(
                "%s: unreadable (%s); using the lines and zones of the config", self.path, exc
            )
            return None
        geometry, problem = parse_geometry(data)
        if problem:
            log.error(
                "%s: invalid (%s); using the lines and zones of the config", self.path, problem
            )
        return geometry

    def counting(self, lines: list[LineConfig], zones: list[ZoneConfig]) -> tuple[Geometry, bool]:
        """The lines and zones the daemon counts with: the saved live ones (``set_zones``, the
        editor) win over the config's ``lines``/``zones``; and whether they are the live ones."""
        stored = self.load()
        if stored is not None:
            return stored, True
        return Geometry.model_construct(lines=lines, zones=zones), False

    def save(self, geometry: Geometry) -> None:
        atomic_write(self.path, geometry.model_dump_json(indent=2).encode("utf-8"))


def counting_geometry(settings: Settings) -> tuple[Settings, str]:
    """The settings with the lines and zones the daemon would count with, and whose they are."""
    store = GeometryStore(settings.paths.state_dir)
    geometry, live = store.counting(settings.lines, settings.zones)
    if not live:
        return settings, "config"
    copy = settings.model_copy(deep=True)
    copy.lines, copy.zones = geometry.lines, geometry.zones
    return copy, f"live ({store.path})"

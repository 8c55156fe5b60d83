"""Daemon configuration: a TOML file layered under ``INTENTCAM_`` environment variables.

Precedence, highest first: explicit overrides (CLI flags) > environment (``INTENTCAM_DETECTOR__THREADS=2``)
> TOML file (``/etc/intentcam/intentcam.toml`` or ``--config``) > defaults below.
Every problem is reported as one line ``dotted.path: reason``; see :func:`load_config`.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from intentcam.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DEFAULT_CONFIG_PATH = Path("/etc/intentcam/intentcam.toml")
ENV_PREFIX = "INTENTCAM_"
#: Safe inside an MQTT topic level and a file name.
IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def default_state_dir() -> Path:
    """Where the daemon keeps models, the spool and live zones.

    systemd's ``StateDirectory=`` exports ``STATE_DIRECTORY``; as root without systemd we use the
    FHS location; an ordinary user gets an XDG state folder so nothing needs root to try it out.
    """
    systemd_dir = os.environ.get("STATE_DIRECTORY")
    if systemd_dir:
        return Path(systemd_dir.split(":")[0])
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/intentcam")
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "intentcam"


#: Where systemd keeps the machine's unique id (set at first boot, distinct per flashed card).
MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))


def _default_device_id(machine_id_files: tuple[Path, ...] = MACHINE_ID_FILES) -> str:
    """``<hostname>-<first 8 hex of the machine id>``: cameras flashed from one image keep the
    image's hostname, so the hostname alone would make them share one MQTT session and one seq
    stream. Falls back to the hostname when no machine id exists."""
    host = socket.gethostname().split(".")[0] or "intentcam"
    cleaned = "".join(c if c.isalnum() or c in "-_" else "-" for c in host)[:55]
    for path in machine_id_files:
        try:
            machine = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if len(machine) >= 8 and all(c in "0123456789abcdef" for c in machine[:8]):
            return f"{cleaned}-{machine[:8]}"
    return cleaned


def read_secret(value: SecretStr | None, path: Path | None, field: str,
                first: Callable[[str], str]) -> str | None:  # fmt: skip
    """A secret given in the config (``value``) or else read from the file at ``path`` (``first``
    picks it out of the text); a file that cannot be read or holds nothing is a
    :class:`ConfigError` naming ``field``."""
    if value is not None:
        return value.get_secret_value()
    if path is None:
        return None
    try:
        return first(path.read_text(encoding="utf-8"))
    except (OSError, IndexError) as exc:
        reason = getattr(exc, "strerror", None) or "empty file"
        raise ConfigError([f"{field}: cannot read {path} ({reason})"]) from None


def _default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DeviceConfig(_Section):
    """Who this camera is; both values become MQTT topic levels."""

    id: str = Field(default_factory=_default_device_id, pattern=IDENTIFIER_PATTERN)
    site: str = Field(default="default", pattern=IDENTIFIER_PATTERN)


SourceKind = Literal["auto", "file", "images", "v4l2", "url", "picamera2"]


class CameraConfig(_Section):
    """Where frames come from and how fast we take them."""

    source: str = Field(default="/dev/video0", min_length=1)
    kind: SourceKind = "auto"
    fps_cap: float | None = Field(default=10.0, gt=0, le=120)
    resolution: tuple[int, int] = (1280, 720)
    #: picamera2 only: size of the low-resolution stream the detector reads.
    detect_resolution: tuple[int, int] = (640, 360)
    #: File sources: ``fast`` processes every frame as fast as possible (deterministic);
    #: ``realtime`` paces frames at the clip's own rate like a live camera.
    pace: Literal["fast", "realtime"] = "fast"
    #: Frame rate assumed for image folders (timestamps are index / images_fps).
    images_fps: float = Field(default=10.0, gt=0, le=1000)
    reconnect_max_s: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("resolution", "detect_resolution")
    @classmethod
    def _positive_size(cls, value: tuple[int, int]) -> tuple[int, int]:
        width, height = value
        if width < 16 or height < 16 or width > 8192 or height > 8192:
            raise ValueError("width and height must be between 16 and 8192 pixels")
        return value


Tiling = Literal["1x1", "2x1", "2x2", "auto"]


class DetectorConfig(_Section):
    """The person detector: which model, how it runs, and what counts as a person."""

    #: A person-detector id from the model manifest, or ``auto``: the most accurate detector that
    #: runs here at least as fast as SSD v1 did (Edge TPU build on a Coral; see the README).
    model: str = Field(default="auto", pattern=IDENTIFIER_PATTERN)
    threads: int = Field(default_factory=_default_threads, ge=1, le=64)
    #: A box is a person at or above this score. Default: the model's calibrated operating point
    #: from the manifest (scores of different models are not comparable).
    score_threshold: float | None = Field(default=None, gt=0, lt=1)
    #: Smallest accepted box side, as a fraction of the frame's height.
    min_box_size: float = Field(default=0.02, ge=0, lt=1)
    delegate: Literal["auto", "cpu", "edgetpu"] = "auto"
    #: ``auto``: tiles as close to the model's square input as stay sharp (detect/tiling.py);
    #: 1x1 in a view with a ``shelf`` zone, whose shoppers are large (README, "Tiling").
    tiling: Tiling = "auto"
    #: Fraction of a tile's size shared with its neighbour, so people on a seam are whole in one tile.
    tile_overlap: float = Field(default=0.2, ge=0, le=0.5)
    nms_iou: float = Field(default=0.5, gt=0, le=1)
    #: With tiles, also run the whole frame once so people larger than a tile are found whole.
    #: Default: the detector family's (on for SSDs, whose 10-20 boxes per pass and stretched
    #: input need it; off for YOLOX and NanoDet, where it found 6 % more people on the concourse
    #: for 50 % more time: hw_bench/tiling_gain.py).
    tile_full_frame: bool | None = None


class TrackerConfig(_Section):
    """ByteTrack-style association; every lifetime is in seconds of frame time."""

    #: Detections at or above this take part in the first association stage; boxes between
    #: ``low_score`` and it only keep existing tracks alive. Default (both): the detector model's
    #: calibrated operating point from the manifest.
    high_score: float | None = Field(default=None, gt=0, lt=1)
    low_score: float | None = Field(default=None, gt=0, lt=1)
    #: A new track needs a detection at least this confident (default: high_score + 0.1,
    #: ByteTrack's rule).
    new_track_score: float | None = Field(default=None, gt=0, lt=1)
    #: Chosen with the detector thresholds by leave-one-sequence-out
    #: (hw_bench/operating_point_loo.py), like ``lost_ttl_s``.
    match_iou: float = Field(default=0.1, gt=0, lt=1)
    low_match_iou: float = Field(default=0.4, gt=0, lt=1)
    #: IoU a tentative (not yet confirmed) track needs with a high-score detection to continue.
    tentative_match_iou: float = Field(default=0.3, gt=0, lt=1)
    min_hits: int = Field(default=2, ge=1, le=30)
    lost_ttl_s: float = Field(default=1.0, gt=0, le=60)
    #: A new track continues the token of one lost up to this long ago nearby (0: off), so a
    #: person whose track breaks while crossing a line is still counted once. See track/sessions.
    relink_s: float = Field(default=2.0, ge=0, le=30)
    #: How fast someone may have walked meanwhile, in frame heights per second ...
    relink_speed: float = Field(default=0.5, ge=0, le=10)
    #: ... plus this slack for detector jitter, in frame heights.
    relink_margin: float = Field(default=0.05, ge=0, le=1)
    #: A session token is replaced after this long, so no token follows one person for hours.
    max_session_s: float = Field(default=3600.0, ge=10, le=86400)


class MotionGateConfig(_Section):
    """Skip the detector on frames where nothing moves (see intentcam.scheduler)."""

    enabled: bool = True
    pixel_threshold: int = Field(default=14, ge=1, le=255)
    min_changed: float = Field(default=0.003, gt=0, lt=1)
    moving_speed: float = Field(default=0.05, ge=0)
    recheck_s: float = Field(default=2.0, gt=0, le=60)
    max_skip_s: float = Field(default=10.0, gt=0, le=600)


Point = tuple[float, float]


#: Points one line or zone may have (the frame loop tests every foot point against each edge).
MAX_POINTS = 256


def _check_points(points: list[Point], minimum: int) -> list[Point]:
    if len(points) < minimum:
        raise ValueError(f"needs at least {minimum} points")
    if len(points) > MAX_POINTS:
        raise ValueError(f"has {len(points)} points, at most {MAX_POINTS}")
    for x, y in points:
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError(f"point ({x}, {y}) is outside the image: coordinates are 0..1")
    return points


class LineConfig(_Section):
    """A counting line: a polyline in normalised image coordinates (x right, y down)."""

    id: str = Field(pattern=IDENTIFIER_PATTERN)
    points: list[Point]
    #: Door lines feed the store occupancy (in minus out).
    door: bool = True
    #: Which side is inside: stand on the first point, look towards the last one; a person
    #: stepping onto your ``right`` (the default) or ``left`` side walks in.
    #: ``intentcam preview`` draws the arrow.
    in_side: Literal["right", "left"] = "right"

    @field_validator("points")
    @classmethod
    def _valid(cls, points: list[Point]) -> list[Point]:
        _check_points(points, 2)
        if any(a == b for a, b in zip(points, points[1:])):
            raise ValueError("consecutive points must differ")
        return points

    def oriented_points(self) -> list[list[float]]:
        """The points ordered so that the right-hand side is in (what the counter assumes)."""
        ordered = self.points if self.in_side == "right" else self.points[::-1]
        return [list(point) for point in ordered]


class ZoneConfig(_Section):
    """A polygon zone in normalised image coordinates.

    ``area``, ``display``, ``queue`` and ``staff`` zones are floor areas: a person is in one when
    their foot point is. A ``shelf`` zone is the shelf face or table top where products stand: a
    person is at it when their box comes within ``shelf.near`` of it, and their hands are
    followed there (reaches, inspects, put-backs; see ``[shelf]``).
    """

    id: str = Field(pattern=IDENTIFIER_PATTERN)
    points: list[Point]
    kind: Literal["area", "display", "queue", "staff", "shelf"] = "area"

    @field_validator("points")
    @classmethod
    def _valid(cls, points: list[Point]) -> list[Point]:
        problem = check_polygon(points)
        if problem:
            raise ValueError(problem)
        return points


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _segments_cross(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """Whether two segments properly intersect or touch (collinear overlaps included)."""
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    if ((d1 > 0) != (d2 > 0)) and ((d3 > 0) != (d4 > 0)) and 0 not in (d1, d2, d3, d4):
        return True

    def on(a: Point, b: Point, c: Point) -> bool:
        return min(a[0], b[0]) <= c[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= c[1] <= max(
            a[1], b[1]
        )

    return (
        (d1 == 0 and on(q1, q2, p1))
        or (d2 == 0 and on(q1, q2, p2))
        or (d3 == 0 and on(p1, p2, q1))
        or (d4 == 0 and on(p1, p2, q2))
    )


def check_polygon(points: list[Point]) -> str | None:
    """Why ``points`` (normalised) cannot be a zone: too few or too many, outside the image,
    no area, edges crossing; ``None`` if they can."""
    try:
        _check_points(points, 3)
    except ValueError as exc:
        return str(exc)
    return polygon_problem(points)


def polygon_problem(points: list[Point]) -> str | None:
    """Why a zone polygon is unusable (no area, edges crossing), or ``None``."""
    edges = list(zip(points, points[1:] + points[:1]))
    count = len(edges)
    for i in range(count):
        for j in range(i + 1, count):
            if j == i + 1 or (i == 0 and j == count - 1):
                continue  # neighbours share a corner
            if _segments_cross(*edges[i], *edges[j]):
                return f"edges {i + 1} and {j + 1} cross: the polygon must not intersect itself"
    area = 0.5 * abs(
        sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(points, points[1:] + points[:1]))
    )
    if area < 1e-6:
        return "the polygon has no area (points repeated or on one line)"
    return None


class HomographyConfig(_Section):
    """Four image points (normalised) and where they lie on the floor (metres)."""

    image: list[Point] = Field(min_length=4, max_length=4)
    floor: list[Point] = Field(min_length=4, max_length=4)
    #: The floor rectangle the heatmap grid covers, in metres from the floor origin.
    floor_size: Point

    @field_validator("image", "floor")
    @classmethod
    def _quadrilateral(cls, points: list[Point]) -> list[Point]:
        # Four equal or collinear points give a singular mapping: nonsense metres.
        problem = polygon_problem(points)
        if problem:
            raise ValueError(f"the four points must form a proper quadrilateral: {problem}")
        return points

    @field_validator("floor_size")
    @classmethod
    def _positive(cls, size: Point) -> Point:
        if size[0] <= 0 or size[1] <= 0:
            raise ValueError("width and depth must be positive metres")
        return size


class AnalyticsConfig(_Section):
    window_s: float = Field(default=60.0, ge=1, le=3600)
    #: How often the open window is checkpointed to disk: at most this much is lost in a crash.
    checkpoint_s: float = Field(default=5.0, ge=1, le=600)
    heatmap_window_s: float = Field(default=300.0, ge=1, le=86400)
    heatmap_grid: tuple[int, int] = (32, 18)
    #: How far (frame heights) a foot point must get past a line for a crossing to count.
    line_hysteresis: float = Field(default=0.03, ge=0, le=0.5)
    #: Sessions shorter than this (track fragments, passers-by at the edge) are counted in the
    #: sessions message but not published one by one.
    min_session_s: float = Field(default=2.0, ge=0, le=3600)
    zone_enter_s: float = Field(default=1.0, ge=0, le=600)
    zone_leave_s: float = Field(default=1.0, ge=0, le=600)
    #: Local time at which the store occupancy from door lines is reset to 0, daily.
    occupancy_reset: str = Field(default="04:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    #: IANA time zone for the reset; default: the system's local time.
    timezone: str | None = None
    #: Intent signals (units: frame heights, or metres with a homography).
    min_step: float | None = Field(default=None, gt=0)
    still_speed: float | None = Field(default=None, gt=0)
    approach_radius: float | None = Field(default=None, gt=0)
    homography: HomographyConfig | None = None

    @field_validator("heatmap_grid")
    @classmethod
    def _grid(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not (1 <= value[0] <= 256 and 1 <= value[1] <= 256):
            raise ValueError("grid columns and rows must be between 1 and 256")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r}") from None
        return value


def duplicate_ids(ids: list[str]) -> list[str]:
    """The ids that occur more than once, sorted."""
    return sorted({i for i in ids if ids.count(i) > 1})


def check_unique_ids(lines: list[LineConfig], zones: list[ZoneConfig]) -> None:
    """Lines, and zones, need distinct ids: they key the published counts."""
    for name, items in (("lines", lines), ("zones", zones)):
        duplicates = duplicate_ids([item.id for item in items])
        if duplicates:
            raise ValueError(f"{name}: duplicate id(s) {', '.join(duplicates)}")


#: The zone kind each alert rule watches, and the kind its ``staff_zone`` must be.
ALERT_ZONE_KIND = {"shelf_help": "shelf", "long_queue": "queue"}


def alert_zone_problem(alerts: AlertsConfig, zones: list[ZoneConfig]) -> str | None:
    """Why the alert rules do not fit these zones (a rule may only name zones that exist, of
    the kind it watches; rule ids are distinct), or ``None``."""
    kinds = {zone.id: zone.kind for zone in zones}
    duplicates = duplicate_ids([rule.id for rule in alerts.rules])
    if duplicates:
        return f"alerts.rules: duplicate id(s) {', '.join(duplicates)}"
    for rule in alerts.rules:
        wanted = ALERT_ZONE_KIND[rule.kind]
        for zone in rule.zones:
            if kinds.get(zone) != wanted:
                return f"alerts.rules.{rule.id}.zones: {zone!r} is not a {wanted} zone"
        if rule.staff_zone is not None and kinds.get(rule.staff_zone) != "staff":
            return f"alerts.rules.{rule.id}.staff_zone: {rule.staff_zone!r} is not a staff zone"
    return None


class PrivacyConfig(_Section):
    #: Aggregates describing fewer distinct people than this are suppressed.
    k_min: int = Field(default=3, ge=1, le=100)
    #: Facial-expression inference. Off by default; turning it on requires ``shopper_notice``.
    expression_inference: bool = False
    #: Where shoppers are told about emotion recognition (EU AI Act Art. 50(3)).
    shopper_notice: str | None = Field(default=None, validate_default=True)
    #: Zone ids where faces are never analysed (``staff`` zones always are excluded).
    exclude_zones: list[str] = Field(default_factory=list)

    @field_validator("shopper_notice")
    @classmethod
    def _notice(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("expression_inference") and not (value and value.strip()):
            raise ValueError(
                "required when privacy.expression_inference = true: say where "
                'shoppers are informed (EU AI Act Art. 50(3)), e.g. "sign at the '
                'entrance"'
            )
        return value


class FacesConfig(_Section):
    """Face detection and expression sampling (used only with privacy.expression_inference)."""

    model: Literal["blazeface_full_range", "blazeface_short_range"] = "blazeface_full_range"
    #: At most one sample per track per this many seconds (default: 2 per second).
    cadence_s: float = Field(default=0.5, gt=0, le=60)
    #: Time the face work may take per frame; tracks not reached wait for the next frame.
    budget_ms: float = Field(default=15.0, gt=0, le=1000)
    min_face_px: float = Field(default=40.0, ge=8, le=1000)
    min_face_score: float = Field(default=0.6, gt=0, lt=1)
    min_sharpness: float = Field(default=15.0, ge=0)
    #: Close-range camera: search the whole frame instead of the head regions of tracks.
    whole_frame: bool = False


class ShelfConfig(_Section):
    """Hands at ``shelf`` zones: MoveNet on the people there, and the interaction thresholds.

    The thresholds were chosen on hand-labelled clips (``intentcam eval-shelf``,
    evaluation/shelf/README.md); change them only with a measurement.
    """

    #: How close (frame heights) a person's box must come to a shelf zone to be *at* it.
    near: float = Field(default=0.05, ge=0, le=1)
    #: At most one pose per person at a shelf per this many seconds: 0.06 takes every frame of
    #: a camera at up to 16 fps (reaches can be as short as 0.3 s); the budget still bounds it.
    pose_interval_s: float = Field(default=0.06, gt=0, le=10)
    #: Beyond the time the loop waits for a live camera anyway (spent on poses first, at no
    #: cost in frames), pose work may take at most this share of the detector's time, averaged
    #: over frames (a token bucket): 0.1 keeps the frame rate at or above 1 / 1.1 = 0.91 of
    #: what it is without shelves in theory. Measured with everyone at a shelf
    #: (hw_bench/pose_cost.py) the rest of the shelf work (who is at which shelf, paces, the
    #: zone) takes another 4 %, and 0.15 left 0.79x to 0.86x from run to run, too near the
    #: 0.8x the frame rate must keep. People not reached wait for a later frame.
    budget_share: float = Field(default=0.1, gt=0, le=2)
    #: MoveNet sees this share of the person's box, from its top: the upper body, so the arms
    #: and hands get more of its pixels (0.5 was best on the tune clips among 0.4 to 1.0).
    crop_top: float = Field(default=0.5, ge=0.3, le=1)
    #: For a person at a shelf that rises above their head in the picture, the crop also takes
    #: this share of the box's height above its top: a detector's box tends to end at the head,
    #: and a hand raised to a high shelf is above it (a hand held straight up is about 0.3 of
    #: a person's height over the head; 0 turns this off).
    crop_above: float = Field(default=0.3, ge=0, le=1)
    #: Keypoints below this MoveNet score are ignored.
    min_score: float = Field(default=0.3, gt=0, lt=1)
    #: A wrist counts as reaching when held out from the torso (the segment from the shoulders to
    #: the hips) by at least this many torso lengths, sideways, above the shoulders or below the
    #: hips: hanging arms and hands at the chest stay below. Measured in the picture's own
    #: proportions (x times the aspect ratio), the same on a 4:3 and a 16:9 camera.
    extension: float = Field(default=0.5, ge=0, le=3)
    #: How far outside the shelf polygon (torso lengths) a wrist still counts as on the shelf.
    margin: float = Field(default=0.0, ge=0, le=2)
    #: The hand point: the wrist plus this many forearm lengths along elbow -> wrist.
    hand: float = Field(default=0.0, ge=0, le=2)
    #: A reach starts after a hand has been on the shelf this long, and ends after it has been
    #: off this long (hysteresis, seconds).
    start_s: float = Field(default=0.1, ge=0, le=10)
    end_s: float = Field(default=0.4, ge=0, le=10)
    #: A hand last seen on the shelf and then lost by MoveNet (no wrist above ``min_score``:
    #: products and shelving hide hands) ends its reach only after this long (seconds) instead
    #: of ``end_s``: not seeing a hand is not seeing it come out (evaluation/shelf/README.md,
    #: twelfth session; 0 turns this off).
    lost_s: float = Field(default=1.0, ge=0, le=10)
    #: After a reach, the person holds what they took this long, wrist at least ``away`` frame
    #: heights off the shelf: an inspect.
    inspect_s: float = Field(default=0.7, ge=0, le=60)
    away: float = Field(default=0.03, ge=0, le=1)
    #: A person whose box moves faster than this (body heights per second, over the last half
    #: second, as far as both its edges moved) is walking, not standing at the shelf: their
    #: hands are not judged and they do not inspect. From an elevated camera, people walking
    #: past overlap the shelf in the picture and swing their arms out (0.3 to 0.64 measured
    #: where they did; shoppers with a hand on the shelf a median 0.00 to 0.04, at most 0.30;
    #: evaluation/shelf/README.md, fifteenth and seventeenth sessions). 0 turns it off.
    walking: float = Field(default=0.25, ge=0, le=10)


class AlertRuleConfig(_Section):
    """One staff-assist rule; see docs/alerts.md for what each kind means."""

    #: Names the rule in every alert it raises (``rule``).
    id: str = Field(pattern=IDENTIFIER_PATTERN)
    #: ``shelf_help``: someone has lingered at one shelf zone for ``linger_s`` with at least
    #: ``min_reaches`` reaches and nobody is in ``staff_zone``. ``long_queue``: a queue zone has
    #: held at least ``min_people`` for ``for_s``.
    kind: Literal["shelf_help", "long_queue"]
    enabled: bool = True
    #: Zones the rule watches (``shelf`` zones for shelf_help, ``queue`` zones for long_queue);
    #: empty: every zone of that kind.
    zones: list[str] = Field(default_factory=list)
    linger_s: float = Field(default=30.0, ge=0, le=3600)
    min_reaches: int = Field(default=2, ge=0, le=100)
    #: A ``staff`` zone: while someone is in it, help is at hand and shelf_help stays quiet.
    staff_zone: str | None = None
    min_people: int = Field(default=4, ge=1, le=1000)
    for_s: float = Field(default=60.0, ge=0, le=3600)
    #: After an alert, the same rule stays quiet for this long in the same zone.
    cooldown_s: float = Field(default=300.0, ge=0, le=86400)
    #: Local times with no alerts (store closed, staff briefing), e.g. "21:00-08:00".
    quiet_hours: str | None = Field(
        default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$"
    )


class AlertsConfig(_Section):
    """Staff-assist alerts on the ``alerts`` topic (QoS 1, not retained, not spooled to disk)."""

    #: The off switch for every rule.
    enabled: bool = True
    rules: list[AlertRuleConfig] = Field(default_factory=list)
    #: While the broker is away an alert waits in memory this long after it fired, then is
    #: dropped, logged and counted (health ``alerts.expired``): staff sent minutes late find
    #: nobody to help. It is also the alert's MQTT 5 message expiry, so the broker does not
    #: hand it later to a staff app that was offline.
    deliver_within_s: float = Field(default=120.0, ge=1, le=3600)

    @property
    def active(self) -> list[AlertRuleConfig]:
        """The rules in effect: those turned on, none when alerts are off."""
        return [rule for rule in self.rules if rule.enabled] if self.enabled else []


class MqttConfig(_Section):
    """The store gateway's broker. With no ``host`` telemetry is only spooled (and sunk)."""

    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    protocol: Literal["5", "3.1.1"] = "5"
    client_id: str | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    topic_root: str = Field(default="intentcam/v1", pattern=r"^[A-Za-z0-9_/-]+$")
    username: str | None = None
    #: The password itself (best from the environment: INTENTCAM_MQTT__PASSWORD) or a file.
    password: SecretStr | None = None
    password_file: Path | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    #: Only for test benches: skip the broker hostname check.
    tls_insecure: bool = False
    reconnect_min_s: float = Field(default=1.0, gt=0, le=60)
    reconnect_max_s: float = Field(default=60.0, gt=0, le=3600)
    #: Messages sent but not yet acknowledged at any time.
    max_inflight: int = Field(default=20, ge=1, le=1000)
    #: How long a stopping daemon goes on publishing what the spool holds before it sends
    #: ``stopped`` and leaves the rest for its next start (kept on disk, nothing lost); keep it
    #: well under the service's ``TimeoutStopSec`` (30 s in systemd/intentcam.service).
    stop_flush_s: float = Field(default=5.0, ge=0, le=600)
    #: MQTT 5 response topics a command may name must start with this (no wildcards); unset,
    #: replies go only to the device's own ``cmd/<name>/reply``.
    response_prefix: str | None = Field(default=None, pattern=r"^[^#+\x00]{1,200}$")

    @property
    def effective_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)

    def read_password(self) -> str | None:
        """The password from ``password`` or ``password_file`` (first line), never logged."""
        # The whole first line: a password may hold spaces.
        return read_secret(self.password, self.password_file, "mqtt.password_file",
                           lambda text: text.splitlines()[0])  # fmt: skip


class SpoolConfig(_Section):
    """The on-disk queue every telemetry message passes through before it is published."""

    max_bytes: int = Field(default=64 * 1024 * 1024, ge=64 * 1024)
    max_age_s: float = Field(default=7 * 86400, ge=60)
    #: While the disk refuses the spool (full, read-only, I/O errors), how often the spool file is
    #: opened afresh; messages are held in memory meanwhile.
    retry_s: float = Field(default=30.0, ge=0.1, le=3600)


class TelemetryConfig(_Section):
    health_interval_s: float = Field(default=30.0, ge=1, le=3600)
    #: Largest accepted command payload.
    max_command_bytes: int = Field(default=64 * 1024, ge=256, le=16 * 1024 * 1024)
    #: Commands accepted per second on average, and in one burst; more get a "busy" reply.
    max_commands_per_s: float = Field(default=5.0, gt=0, le=1000)
    command_burst: int = Field(default=20, ge=1, le=10000)
    #: ``set_zones`` bounds: every zone and line costs work on every frame and bytes in counts.
    max_zones: int = Field(default=32, ge=0, le=1000)
    max_lines: int = Field(default=16, ge=0, le=1000)
    max_points: int = Field(default=32, ge=3, le=MAX_POINTS)
    #: The retained ``state`` message (occupancy, today's totals) goes out when it changes, but
    #: at most once per this many seconds: a busy door must not flood the broker.
    state_interval_s: float = Field(default=1.0, ge=0.1, le=3600)
    #: Publish one ``events`` message per line crossing and zone entry or exit (spooled, QoS 1).
    events: bool = False
    #: Put the anonymous session token in each event (off: an event says what, where, when).
    event_tokens: bool = False


class HomeAssistantConfig(_Section):
    """Home Assistant MQTT discovery: the camera appears as one device with its sensors."""

    enabled: bool = False
    discovery_prefix: str = Field(default="homeassistant", pattern=r"^[A-Za-z0-9_/-]+$")
    #: The device's name in Home Assistant (default: the device id).
    name: str | None = Field(default=None, min_length=1, max_length=100)


class PathsConfig(_Section):
    """Folders the daemon writes. ``model_dir`` defaults to ``<state_dir>/models``."""

    state_dir: Path = Field(default_factory=default_state_dir)
    model_dir: Path | None = None
    #: Model manifest; defaults to the one shipped with the package.
    manifest: Path | None = None
    #: Where the running daemon leaves its latest health for ``intentcam check``. Defaults to
    #: systemd's ``RuntimeDirectory=`` (``/run/intentcam``, RAM: it outlives a failing SD card),
    #: else the state dir.
    runtime_dir: Path | None = None

    @property
    def models(self) -> Path:
        return self.model_dir if self.model_dir is not None else self.state_dir / "models"

    @property
    def runtime(self) -> Path:
        if self.runtime_dir is not None:
            return self.runtime_dir
        systemd_dir = os.environ.get("RUNTIME_DIRECTORY")
        return Path(systemd_dir.split(":")[0]) if systemd_dir else self.state_dir


class OtaConfig(_Section):
    """Model updates: trusted keys, the store's bounds, probation, and the hawkBit DDI server."""

    #: Ed25519 public keys (``*.pub``, PEM) a bundle's signature must match one of.
    trusted_keys_dir: Path = Path("/etc/intentcam/ota-keys")
    #: Older committed versions kept for rollback (the loaded one is never deleted).
    keep_versions: int = Field(default=2, ge=1, le=20)
    max_bundle_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    #: Free space that must remain in the state dir after unpacking a bundle.
    min_free_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    download_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    download_retries: int = Field(default=5, ge=0, le=100)
    #: How long a hot-swapped model runs on the live camera before it is committed.
    probation_s: float = Field(default=120.0, ge=1, le=86400)
    #: Probation fails below this share of the previous model's frame rate or speed per
    #: detection ...
    min_fps_ratio: float = Field(default=0.5, gt=0, le=1)
    #: ... or of its people per frame (checked when the previous model saw people at all).
    min_detection_ratio: float = Field(default=0.5, ge=0, le=1)
    #: hawkBit / gooseBit server (``https://host:port``); unset: no polling.
    server_url: str | None = Field(default=None, pattern=r"^https?://")
    tenant: str = Field(default="DEFAULT", pattern=IDENTIFIER_PATTERN)
    #: The device's controller id on the server; default: ``device.id``.
    controller_id: str | None = Field(default=None, pattern=IDENTIFIER_PATTERN)
    #: hawkBit target token (best from the environment: INTENTCAM_OTA__AUTH_TOKEN) or a file.
    auth_token: SecretStr | None = None
    auth_token_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    #: Poll interval when the server does not say; the server's ``sleep`` wins otherwise.
    poll_interval_s: float = Field(default=300.0, ge=1, le=86400)
    hw_boardname: str = Field(default="intentcam", pattern=IDENTIFIER_PATTERN)
    hw_revision: str = Field(default="1", pattern=IDENTIFIER_PATTERN)

    def read_token(self) -> str | None:
        """The DDI target token from ``auth_token`` or ``auth_token_file`` (never logged)."""
        # The first word: a token has no spaces, and a trailing newline or comment is not it.
        return read_secret(self.auth_token, self.auth_token_file, "ota.auth_token_file",
                           lambda text: text.split()[0])  # fmt: skip


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Settings(BaseSettings):
    """The whole daemon configuration."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    device: DeviceConfig = Field(default_factory=DeviceConfig)
    camera: CameraConfig = Field(default_factory=CameraConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    motion_gate: MotionGateConfig = Field(default_factory=MotionGateConfig)
    analytics: AnalyticsConfig = Field(default_factory=AnalyticsConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    faces: FacesConfig = Field(default_factory=FacesConfig)
    shelf: ShelfConfig = Field(default_factory=ShelfConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    lines: list[LineConfig] = Field(default_factory=list)
    zones: list[ZoneConfig] = Field(default_factory=list)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    spool: SpoolConfig = Field(default_factory=SpoolConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    homeassistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)
    paths: PathsConfig = Field(default_factory=PathsConfig)
    ota: OtaConfig = Field(default_factory=OtaConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @model_validator(mode="after")
    def _unique_ids(self) -> Settings:
        check_unique_ids(self.lines, self.zones)
        return self

    @property
    def shelf_zone_ids(self) -> list[str]:
        """The ids of the ``shelf`` zones (where hands are watched and reaches counted)."""
        return [zone.id for zone in self.zones if zone.kind == "shelf"]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file is passed in as init data *below* the environment: see load_config.
        return env_settings, init_settings


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML config file, turning every failure into a one-line :class:`ConfigError`."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file not found"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a directory, not a config file"]) from None
    except PermissionError:
        raise ConfigError([f"{path}: permission denied"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not a text file"]) from None


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def describe_validation_error(
    error: ValidationError,
    unknown: str = "unknown setting (check the spelling against the example config)",
) -> list[str]:
    """One line per bad field: ``detector.threads: Input should be ... (got -1)``; ``unknown``
    for a field the model does not have."""
    lines = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = unknown
        value = item.get("input")
        shown = "" if isinstance(value, dict) or item["type"] == "missing" else f" (got {value!r})"
        lines.append(f"{path}: {message}{shown}")
    return lines


#: ``INTENTCAM_*`` variables that are not settings (tools and tests read them).
OTHER_VARIABLES = (
    "INTENTCAM_MODEL_MIRROR",
    "INTENTCAM_OFFLINE",
    "INTENTCAM_SHARED",
    "INTENTCAM_OTA_FAULT",
    "INTENTCAM_GOOSEBIT_PYTHON",
)


def warn_unknown_environment() -> list[str]:
    """Name ``INTENTCAM_*`` variables that match no setting (a typo would be ignored silently)."""
    import logging
    import os

    sections = {name.upper() for name in Settings.model_fields}
    unknown = [
        key
        for key in os.environ
        if key.startswith(ENV_PREFIX)
        and key not in OTHER_VARIABLES
        and key[len(ENV_PREFIX) :].split("__")[0] not in sections
    ]
    if unknown:
        logging.getLogger(__name__).warning(
            "ignoring unknown environment variable(s) %s (sections: %s)",
            ", ".join(sorted(unknown)),
            ", ".join(sorted(section.lower() for section in sections)),
        )
    return unknown


def environment_problems(error: Exception) -> list[str]:
    """One line naming the environment variables pydantic-settings could not parse."""
    import os
    import re

    match = re.search(r'field "([^"]+)"', str(error))
    section = match.group(1).upper() if match else ""
    names = sorted(
        key for key in os.environ if section and key.startswith(f"{ENV_PREFIX}{section}")
    )
    shown = "; ".join(f"{name}={os.environ[name][:40]!r}" for name in names) or str(error)
    return [
        f"environment: cannot parse {shown} (lists and tables are JSON, e.g. "
        f"{ENV_PREFIX}CAMERA__RESOLUTION='[1280, 720]')"
    ]


def with_sections(settings: Settings, **sections: dict[str, Any]) -> Settings:
    """A copy of ``settings`` with some fields of some sections replaced (not validated again:
    for values that come from valid settings, like another run's state dir)."""
    copy = settings.model_copy(deep=True)
    for section, values in sections.items():
        setattr(copy, section, getattr(copy, section).model_copy(update=values))
    return copy


def load_config(
    path: Path | str | None = None, *, overrides: dict[str, Any] | None = None
) -> Settings:
    """Build :class:`Settings` from defaults, a TOML file, ``INTENTCAM_*`` variables and overrides.

    ``path=None`` reads :data:`DEFAULT_CONFIG_PATH` if it exists and uses defaults otherwise;
    an explicit path must exist. Raises :class:`ConfigError` with one line per bad field.
    """
    file_data: dict[str, Any] = {}
    if path is not None:
        file_data = read_toml(Path(path))
    elif DEFAULT_CONFIG_PATH.exists():
        file_data = read_toml(DEFAULT_CONFIG_PATH)
    warn_unknown_environment()
    try:
        settings = Settings(**file_data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    except SettingsError as exc:
        raise ConfigError(environment_problems(exc)) from None
    for section, values in (overrides or {}).items():
        # Validate the section model itself: re-validating Settings would re-read the
        # environment and let it win over explicit overrides (command-line flags).
        current = getattr(settings, section)
        try:
            if isinstance(current, BaseModel):
                updated = type(current).model_validate(_deep_merge(current.model_dump(), values))
            else:  # [[lines]] / [[zones]]: an override replaces the whole list
                annotation: Any = Settings.model_fields[section].annotation
                updated = TypeAdapter(annotation).validate_python(values)
        except ValidationError as exc:
            raise ConfigError(
                [f"{section}.{line}" for line in describe_validation_error(exc)]
            ) from None
        setattr(settings, section, updated)
    # Checked once the zones are final (overrides included), not on every assignment: zones
    # set live (set_zones) are checked against the rules where they are set.
    problem = alert_zone_problem(settings.alerts, settings.zones)
    if problem:
        raise ConfigError([problem])
    return settings


def redacted(settings: Settings) -> dict[str, Any]:
    """The effective configuration as JSON data, secrets replaced by ``"***"``: the named
    secret settings, and credentials inside any URL or query string (the camera source)."""
    from intentcam.secrets import redact_data

    data = redact_data(settings.model_dump(mode="json"))
    if settings.mqtt.password is not None:
        data["mqtt"]["password"] = "***"
    if settings.ota.auth_token is not None:
        data["ota"]["auth_token"] = "***"
    return data


def config_hash(settings: Settings) -> str:
    """A short hash of the effective (redacted) configuration, for the status message."""
    import hashlib
    import json

    canonical = json.dumps(redacted(settings), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]

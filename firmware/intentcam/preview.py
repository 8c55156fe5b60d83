"""The installer's privacy-safe view of the scene: a background plate with the geometry drawn on.

``intentcam preview`` (and only that explicit command: the daemon never writes an image, DESIGN.md
privacy rule 1) watches the camera for a few seconds and builds:

1. a **background plate**: the per-pixel temporal median of frames sampled across the window,
   so people who walk through vanish;
2. **blurred people**: the detector runs on the plate itself; wherever it still finds someone
   (a person who stood still all along), that region is pixelated and blurred beyond recognition,
   and the plate is checked again until nobody is found;
3. the **overlay**: a 0.1 grid with its coordinates, every zone with its id, every line with its
   id and an arrow pointing ``in`` (``in_side``), and the foot-point trails (bottom centre of the
   box) of the people tracked during the window: trails only, never a crop.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np

from intentcam.capture.frame import FrameSource
from intentcam.config import LineConfig, Settings, ZoneConfig
from intentcam.detect import PersonDetector
from intentcam.errors import UserError
from intentcam.track.bytetrack import ByteTracker, TrackerSettings

#: Frames kept for the median (memory: this many full frames).
PLATE_SAMPLES = 24
#: Blocks across the wider side of a blurred box: coarse enough that nobody is recognisable.
PIXELATE_BLOCKS = 6
LINE_COLOUR = (0, 215, 255)  # BGR amber
ZONE_COLOUR = (255, 160, 0)  # BGR azure
GRID_COLOUR = (200, 200, 200)


@dataclass
class Watch:
    """What a window of frames gave: the sampled frames, the trails, how many frames were read."""

    samples: list[np.ndarray] = field(default_factory=list)
    trails: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    frames: int = 0


@dataclass(frozen=True)
class Preview:
    """``image`` with the overlay; ``plate`` the same background without it (the editor draws
    its own); ``trail_points`` the trails in normalised coordinates."""

    image: np.ndarray
    plate: np.ndarray
    trail_points: list[list[tuple[float, float]]]
    frames: int
    samples: int
    trails: int
    blurred: int


def watch(
    source: FrameSource,
    detector: PersonDetector,
    tracker: ByteTracker,
    seconds: float,
    tick: Callable[[float], None] = lambda elapsed: None,
) -> Watch:
    """Read ``seconds`` of frames (clip time for files): track people, sample the plate."""
    seen = Watch()
    start: float | None = None
    next_sample = 0.0
    while True:
        frame = source.read(timeout=5.0)
        if frame is None:
            break
        start = frame.timestamp if start is None else start
        elapsed = frame.timestamp - start
        if elapsed > seconds:
            break
        seen.frames += 1
        tick(elapsed)
        found = detector.detect(frame.image, min_score=tracker.settings.low_score)
        tracked = tracker.update(found.boxes, found.scores, frame.timestamp)
        for track_id, box in zip(tracked.ids.tolist(), tracked.boxes):
            foot = (float(box[0] + box[2]) / 2, float(box[3]))
            seen.trails.setdefault(track_id, []).append(foot)
        if elapsed >= next_sample:
            seen.samples.append(frame.image.copy())
            next_sample += seconds / PLATE_SAMPLES
    return seen


def background_plate(samples: list[np.ndarray]) -> np.ndarray:
    """The per-pixel median: whatever is there in fewer than half the samples disappears."""
    return np.median(np.stack(samples), axis=0).astype(np.uint8)


def blur_people(plate: np.ndarray, detector: PersonDetector, min_score: float) -> int:
    """Pixelate and blur, in place, every person the detector still finds; returns how many."""
    blurred = 0
    height, width = plate.shape[:2]
    for _ in range(3):  # a blurred person may uncover another behind them
        found = detector.detect(plate, min_score=min_score)
        if len(found) == 0:
            break
        for x1, y1, x2, y2 in found.to_pixels(width, height).astype(int):
            margin_x, margin_y = (x2 - x1) // 5 + 2, (y2 - y1) // 10 + 2
            x1, y1 = max(x1 - margin_x, 0), max(y1 - margin_y, 0)
            x2, y2 = min(x2 + margin_x, width), min(y2 + margin_y, height)
            if x2 <= x1 or y2 <= y1:
                continue
            region = plate[y1:y2, x1:x2]
            step = max(max(x2 - x1, y2 - y1) // PIXELATE_BLOCKS, 1)
            small = cv2.resize(region, (max((x2 - x1) // step, 1), max((y2 - y1) // step, 1)),
                               interpolation=cv2.INTER_AREA)  # fmt: skip
            coarse = cv2.resize(small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST)
            plate[y1:y2, x1:x2] = cv2.GaussianBlur(coarse, (0, 0), step / 2)
            blurred += 1
    return blurred


def _pixel(point: tuple[float, float], width: int, height: int) -> tuple[int, int]:
    return int(round(point[0] * (width - 1))), int(round(point[1] * (height - 1)))


def _label(image: np.ndarray, text: str, at: tuple[int, int], colour: tuple[int, int, int]) -> None:
    scale = max(image.shape[1] / 1600, 0.45)
    cv2.putText(image, text, at, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(image, text, at, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def draw_grid(image: np.ndarray) -> None:
    height, width = image.shape[:2]
    for tenth in range(1, 10):
        x, y = int(tenth * width / 10), int(tenth * height / 10)
        cv2.line(image, (x, 0), (x, height - 1), GRID_COLOUR, 1, cv2.LINE_AA)
        cv2.line(image, (0, y), (width - 1, y), GRID_COLOUR, 1, cv2.LINE_AA)
        _label(image, f"{tenth / 10:.1f}", (x + 3, 14), GRID_COLOUR)
        _label(image, f"{tenth / 10:.1f}", (3, y - 4), GRID_COLOUR)


def draw_zone(image: np.ndarray, zone: ZoneConfig) -> None:
    height, width = image.shape[:2]
    polygon = np.array([_pixel(p, width, height) for p in zone.points], dtype=np.int32)
    shade = image.copy()
    cv2.fillPoly(shade, [polygon], ZONE_COLOUR)
    cv2.addWeighted(shade, 0.25, image, 0.75, 0, dst=image)
    cv2.polylines(image, [polygon], True, ZONE_COLOUR, 2, cv2.LINE_AA)
    # The kind in the label: a shelf polygon is checked by other rules (hands, not feet).
    _label(image, f"{zone.kind} {zone.id}", tuple(polygon.min(axis=0) + [4, 18]), ZONE_COLOUR)


def draw_line(image: np.ndarray, line: LineConfig) -> None:
    """The polyline, its id, and an arrow from its middle towards the inside."""
    height, width = image.shape[:2]
    points = np.array([_pixel(p, width, height) for p in line.points], dtype=np.int32)
    cv2.polylines(image, [points], False, LINE_COLOUR, 3, cv2.LINE_AA)
    oriented = np.array(line.oriented_points()) * [width, height]
    middle = len(oriented) // 2
    a, b = oriented[middle - 1], oriented[middle]
    centre = (a + b) / 2
    along = (b - a) / max(float(np.hypot(*(b - a))), 1e-9)
    inward = np.array([-along[1], along[0]])  # the right-hand side with y pointing down
    tip = centre + inward * max(width, height) * 0.06
    cv2.arrowedLine(image, tuple(centre.astype(int)), tuple(tip.astype(int)), LINE_COLOUR, 3,
                    cv2.LINE_AA, tipLength=0.35)  # fmt: skip
    _label(image, f"line {line.id} (in)", tuple(tip.astype(int) + [6, 0]), LINE_COLOUR)


def draw_trails(image: np.ndarray, trails: dict[int, list[tuple[float, float]]]) -> None:
    height, width = image.shape[:2]
    for number, points in enumerate(trails.values()):
        if len(points) < 2:
            continue
        hue = (number * 47) % 180
        hsv = np.array([[[hue, 220, 255]]], dtype=np.uint8)
        colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].tolist()
        pixels = np.array([_pixel(p, width, height) for p in points], dtype=np.int32)
        cv2.polylines(image, [pixels], False, colour, 2, cv2.LINE_AA)
        cv2.circle(image, tuple(pixels[-1]), 4, colour, -1, cv2.LINE_AA)


#: Set by systemd for a unit's processes (``NOTIFY_SOCKET`` for the daemon's ``Type=notify``).
SERVICE_VARIABLES = ("NOTIFY_SOCKET", "INVOCATION_ID")


def refuse_as_a_service(environ: Mapping[str, str] = os.environ) -> None:
    """Privacy rule 1: a picture of the scene is made only by a person at a shell, never by the
    service (nor anything systemd starts), whatever its configuration says."""
    started_by = [name for name in SERVICE_VARIABLES if environ.get(name)]
    if started_by:
        raise UserError(
            f"a picture of the scene is only made by hand: this process runs as a service "
            f"({', '.join(started_by)} set), where privacy rule 1 forbids images"
        )


def build_preview(
    settings: Settings,
    source: FrameSource,
    detector: PersonDetector,
    seconds: float,
    tick: Callable[[float], None] = lambda elapsed: None,
) -> Preview:
    """Watch, build the plate, blur whoever is left, draw the geometry and the trails."""
    refuse_as_a_service()
    point = detector.operating_point
    first = source.read(timeout=10.0)
    if first is None:
        raise ValueError(f"{source.name}: no frame to build a preview from")
    height, width = first.image.shape[:2]
    tracker = ByteTracker(TrackerSettings.from_config(settings.tracker, point),
                          aspect=width / height)  # fmt: skip
    seen = watch(source, detector, tracker, seconds, tick)
    seen.samples.insert(0, first.image)
    plate = background_plate(seen.samples)
    blurred = blur_people(plate, detector, tracker.settings.low_score)
    image = plate.copy()
    draw_grid(image)
    for zone in settings.zones:
        draw_zone(image, zone)
    draw_trails(image, seen.trails)
    for line in settings.lines:
        draw_line(image, line)
    trails = [points for points in seen.trails.values() if len(points) > 1]
    return Preview(image, plate, trails, seen.frames + 1, len(seen.samples), len(seen.trails),
                   blurred)  # fmt: skip

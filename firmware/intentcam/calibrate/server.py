"""``intentcam calibrate``: draw the lines and zones in a browser, on the privacy-safe plate.

One page (``page.html``, plain JavaScript, nothing to build or download) served from the
device: the background plate of ``intentcam preview`` (no overlay: the page draws the geometry),
the lines and zones, each line's arrow pointing in, the live counts (a shelf's reaches, inspects
and put-backs among them), the last events counted and the trails of the last minute from the
camera. Saving goes through the same validation and limits as the ``set_zones``
command (self-intersecting polygons, duplicate ids, too many points are refused with the
reason), into the state dir's ``zones.json`` that the daemon loads, and the live counts switch
to the new geometry at once.

Listening on loopback needs nothing more (reach it with ``ssh -L``); any other address needs the
token printed at start, in the page's address (``?token=``) and then in each request's
``X-Intentcam-Token`` header.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np

from intentcam.capture import open_source
from intentcam.config import LineConfig, Settings, ZoneConfig
from intentcam.control.geometry_store import (
    Geometry,
    GeometryLimits,
    GeometryStore,
    counting_geometry,
    live_geometry_refusal,
    parse_geometry,
)
from intentcam.detect import PersonDetector
from intentcam.pipeline import Pipeline, build_pipeline
from intentcam.preview import build_preview
from intentcam.service.live import LiveCounts, LiveEvent, LiveSink, watching

log = logging.getLogger(__name__)

#: Trails shown by the page: the last minute.
TRAIL_SECONDS = 60.0
#: Events listed by the page under "Just now".
RECENT_EVENTS = 20
MAX_BODY = 256 * 1024


@dataclass
class LiveView:
    """Counts and trails from the camera since the editor started (or the geometry was last
    saved), shared with the handlers."""

    counts: LiveCounts = field(default_factory=LiveCounts)
    #: The last events counted, newest last (what the page's "Just now" lists).
    recent: deque[LiveEvent] = field(default_factory=lambda: deque(maxlen=RECENT_EVENTS))
    trails: dict[int, deque[tuple[float, float, float]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self, lines: list[LineConfig], zones: list[ZoneConfig]) -> None:
        with self.lock:
            self.counts = LiveCounts.of(lines, zones)
            self.recent.clear()

    def event(self, event: LiveEvent) -> None:
        with self.lock:
            self.counts.add(event)
            self.recent.append(event)

    def track(self, now: float, ids: np.ndarray, boxes: np.ndarray) -> None:
        with self.lock:
            for track_id, box in zip(ids.tolist(), boxes):
                trail = self.trails.setdefault(track_id, deque(maxlen=600))
                trail.append((now, float(box[0] + box[2]) / 2, float(box[3])))
            for track_id in list(self.trails):
                trail = self.trails[track_id]
                while trail and trail[0][0] < now - TRAIL_SECONDS:
                    trail.popleft()
                if not trail:
                    del self.trails[track_id]

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "counts": self.counts.as_dict(),
                "recent": [event.describe().strip() for event in reversed(self.recent)],
                "trails": [
                    [[round(x, 4), round(y, 4)] for _, x, y in t] for t in self.trails.values()
                ],
            }


@dataclass
class Editor:
    """What the handlers serve and change."""

    settings: Settings
    plate_png: bytes
    width: int
    height: int
    token: str | None
    live: LiveView = field(default_factory=LiveView)
    pipeline: Pipeline | None = None
    geometry_lock: threading.Lock = field(default_factory=threading.Lock)
    #: Saved geometry the camera thread has yet to switch to (between two frames, as the daemon).
    pending: Geometry | None = None

    @property
    def store(self) -> GeometryStore:
        return GeometryStore(self.settings.paths.state_dir)

    def geometry(self) -> Geometry:
        return self.store.counting(self.settings.lines, self.settings.zones)[0]

    def save(self, data: Any) -> tuple[bool, str]:
        telemetry = self.settings.telemetry
        limits = GeometryLimits(telemetry.max_zones, telemetry.max_lines, telemetry.max_points)
        geometry, problem = parse_geometry(data, limits)
        if geometry is None:
            return False, problem or "invalid"
        refused = live_geometry_refusal(self.settings, geometry)
        if refused:
            return False, refused
        with self.geometry_lock:
            self.store.save(geometry)
            self.live.reset(geometry.lines, geometry.zones)
            self.pending = geometry
        names = [line.id for line in geometry.lines] + [zone.id for zone in geometry.zones]
        log.info("calibrate: saved %s to %s", ", ".join(names) or "no geometry", self.store.path)
        return True, f"saved to {self.store.path}"

    def state(self) -> dict[str, Any]:
        geometry = self.geometry()
        return {
            "width": self.width,
            "height": self.height,
            "lines": [line.model_dump(mode="json") for line in geometry.lines],
            "zones": [zone.model_dump(mode="json") for zone in geometry.zones],
            "saved_to": str(self.store.path),
            **self.live.snapshot(),
        }

    def authorised(self, query_token: str | None, header_token: str | None) -> bool:
        if self.token is None:
            return True
        given = header_token or query_token or ""
        return hmac.compare_digest(given.encode(), self.token.encode())


def page() -> bytes:
    return resources.files("intentcam.calibrate").joinpath("page.html").read_bytes()


def make_handler(editor: Editor) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "intentcam-calibrate"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
            log.debug("calibrate: " + format, *args)

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, body: Any) -> None:
            self._send(status, json.dumps(body).encode("utf-8"), "application/json")

        def _allowed(self) -> bool:
            query = parse_qs(urlparse(self.path).query).get("token", [None])[0]
            if editor.authorised(query, self.headers.get("X-Intentcam-Token")):
                return True
            self._json(HTTPStatus.FORBIDDEN, {"ok": False, "error": "token missing or wrong"})
            return False

        def do_GET(self) -> None:  # noqa: N802 - the base's name
            if not self._allowed():
                return
            route = urlparse(self.path).path
            if route == "/":
                self._send(HTTPStatus.OK, page(), "text/html; charset=utf-8")
            elif route == "/plate.png":
                self._send(HTTPStatus.OK, editor.plate_png, "image/png")
            elif route == "/api/state":
                self._json(HTTPStatus.OK, editor.state())
            else:
                self._json(HTTPStatus.NOT_FOUND, {"ok": False, "error": f"no {route}"})

        def do_POST(self) -> None:  # noqa: N802
            if not self._allowed():
                return
            if urlparse(self.path).path != "/api/geometry":
                self._json(HTTPStatus.NOT_FOUND, {"ok": False, "error": "no such endpoint"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY:
                self._json(HTTPStatus.BAD_REQUEST, {"ok": False, "error": "empty or too large"})
                return
            try:
                data = json.loads(self.rfile.read(length))
            except ValueError as exc:
                self._json(HTTPStatus.BAD_REQUEST, {"ok": False, "error": f"not JSON: {exc}"})
                return
            ok, message = editor.save(data)
            status = HTTPStatus.OK if ok else HTTPStatus.BAD_REQUEST
            self._json(status, {"ok": ok, "message" if ok else "error": message})

    return Handler


def needs_token(host: str) -> bool:
    """Anything but loopback needs the token."""
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host != "localhost"


def start_live(editor: Editor, detector: PersonDetector, stop: threading.Event) -> threading.Thread:
    """The camera through the daemon's pipeline in the background: live counts and trails."""
    settings, _ = counting_geometry(editor.settings)
    editor.live.reset(settings.lines, settings.zones)
    source = open_source(settings.camera)

    def tick() -> None:
        pipeline = editor.pipeline
        if pipeline is None or pipeline.view is None:
            return
        with editor.geometry_lock:
            pending, editor.pending = editor.pending, None
        if pending is not None:
            pipeline.view.apply_geometry(pending.lines, pending.zones)
        ids, boxes = pipeline.view.tracks()
        editor.live.track(time.monotonic(), ids, boxes)

    editor.pipeline = build_pipeline(watching(settings), source,
                                     LiveSink(editor.live.event, time.time()), detector=detector,
                                     report_every_s=3600, tick=tick)  # fmt: skip

    def run() -> None:
        try:
            assert editor.pipeline is not None
            editor.pipeline.run(stop)
        finally:
            source.close()

    thread = threading.Thread(target=run, name="calibrate-camera", daemon=True)
    thread.start()
    return thread


def prepare(settings: Settings, detector: PersonDetector, seconds: float, host: str) -> Editor:
    """Watch the camera, build the plate, and the editor around it."""
    source = open_source(settings.camera)
    try:
        preview = build_preview(settings, source, detector, seconds)
    finally:
        source.close()
    ok, png = cv2.imencode(".png", preview.plate)
    assert ok
    height, width = preview.plate.shape[:2]
    token = secrets.token_urlsafe(18) if needs_token(host) else None
    return Editor(settings, png.tobytes(), width, height, token)


def serve(editor: Editor, host: str, port: int) -> ThreadingHTTPServer:
    """The HTTP server (not yet serving: call ``serve_forever``)."""
    return ThreadingHTTPServer((host, port), make_handler(editor))

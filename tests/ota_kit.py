"""OTA test material: signing keys and real bundles of the shared SSD v2 model, built by the
fleet-side command as a fleet manager would; and an HTTP server that serves them with Range
support and can drop the connection part way (fault injection)."""

from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.data import SHARED, mirror_dir

SSD_V2 = "ssd_mobilenet_v2_coco_quant"
SSD_V2_FILE = "mobilenet_ssd_v2_coco_quant_postprocess.tflite"
FRAMES = (SHARED / "data" / "kite_and_cold.jpg", SHARED / "data" / "grace_hopper.bmp")
#: The self-test's latency budget of the kit's bundles (a minute a frame). A budget is an absolute
#: time, and this machine is shared: a CI run once went 100 times slower for seconds at a time,
#: so bundles built here get a budget no load can break. The budget's own tests pass their own.
LOAD_PROOF_BUDGET_MS = 60_000.0
#: ``ota.min_fps_ratio`` for tests about something other than the frame-rate gate: probation's
#: frame rate is wall-clock, and on a loaded test machine a 4 s probation once ran at a third of
#: the rate measured just before it. The gate's own test is test_ota_agent's.
LOAD_PROOF_FPS_RATIO = 0.01


def run_ota(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``intentcam-ota ARGS`` in a subprocess (clean ``INTENTCAM_*`` environment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTENTCAM_")}
    return subprocess.run(
        [sys.executable, "-m", "intentcam_ota", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@dataclass
class Kit:
    """Keys and a cache of built bundles in one folder."""

    folder: Path
    built: dict[str, Path] = field(default_factory=dict)

    @property
    def keys(self) -> Path:
        return self.folder / "keys"

    @property
    def other_keys(self) -> Path:
        return self.folder / "other-keys"

    @property
    def model(self) -> Path:
        return mirror_dir() / SSD_V2_FILE

    def bundle(
        self,
        name: str,
        *extra: str,
        serial: int = 1,
        version: str = "1.0.0",
        model: Path | None = None,
        frames: bool = True,
        budget_ms: float | None = LOAD_PROOF_BUDGET_MS,
    ) -> Path:
        """Build (once) a bundle named ``name``; ``extra`` are more ``build`` arguments;
        ``budget_ms`` None lets ``build`` set the budget from what it measures."""
        if name in self.built:
            return self.built[name]
        out = self.folder / f"{name}.swu"
        args = [
            "build",
            "--model",
            str(model or self.model),
            "--id",
            SSD_V2,
            "--version",
            version,
            "--serial",
            str(serial),
            "--key",
            str(self.keys / "ota.key"),
            "--out",
            str(out),
            *extra,
        ]
        if budget_ms is not None:
            args += ["--latency-budget-ms", f"{budget_ms:g}"]
        if frames:
            args += ["--frames", *map(str, FRAMES)]
        result = run_ota(*args)
        assert result.returncode == 0, result.stderr
        self.built[name] = out
        return out


def make_kit(folder: Path) -> Kit:
    kit = Kit(folder)
    for keys in (kit.keys, kit.other_keys):
        result = run_ota("keygen", "--out", str(keys))
        assert result.returncode == 0, result.stderr
    return kit


class _Handler(http.server.BaseHTTPRequestHandler):
    server: BundleServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = self.server.files.get(self.path)
        if path is None:
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        ranged = self.headers.get("Range")
        self.server.requests.append(ranged or "")
        if ranged and ranged.startswith("bytes=") and self.server.honour_range:
            start = int(ranged[6:].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.drops > 0:
            self.server.drops -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # the server drops mid-download
            return
        self.wfile.write(body)


class BundleServer(http.server.ThreadingHTTPServer):
    """Serves files at ``/NAME``; ``drops`` responses end half way through."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, Path] = {}
        self.requests: list[str] = []
        self.drops = 0
        self.honour_range = True
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def add(self, path: Path) -> str:
        self.files[f"/{path.name}"] = path
        return f"http://127.0.0.1:{self.server_address[1]}/{path.name}"

    def __enter__(self) -> BundleServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


def resign(
    kit: Kit,
    source: Path,
    out: Path,
    *,
    files: dict[str, bytes] | None = None,
    edit: Any = None,
) -> Path:
    """A copy of ``source`` with some files replaced and the manifest edited, signed again
    with the kit's key: what a broken build pipeline would ship, properly signed."""
    import io
    import json

    from intentcam.ota.bundle import MANIFEST, SIGNATURE, canonical, encode_signature
    from intentcam.ota.cpio import read_entries, read_entry, write_archive
    from intentcam_ota.keys import load_private

    data = source.read_bytes()
    handle = io.BytesIO(data)
    members = [(e.name, read_entry(handle, e)) for e in list(read_entries(handle, len(data)))]
    content = dict(members)
    content.update(files or {})
    manifest = json.loads(content[MANIFEST])
    for name, value in (files or {}).items():
        manifest["files"][name].update(sha256=hashlib.sha256(value).hexdigest(), size=len(value))
    if edit is not None:
        edit(manifest)
    key = load_private(kit.keys / "ota.key")
    content[MANIFEST] = canonical(manifest)
    content[SIGNATURE] = encode_signature(key.sign(content[MANIFEST]), key.public_key())
    with out.open("wb") as handle_out:
        write_archive(handle_out, [(name, content[name]) for name, _ in members])
    return out

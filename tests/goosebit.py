"""A real gooseBit (hawkBit's device API, SQLite) on a free loopback port, for the OTA tests.

gooseBit needs Python 3.11+ and a large dependency set, so ``make setup`` installs it into its own
virtualenv (``.venv-goosebit``); the tests drive it over HTTP like a fleet manager's script would:
log in, upload a bundle, assign it to a device, read the device's state and update log.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from tests.brokers import free_port
from tests.data import ROOT

PYTHON = Path(os.environ.get("INTENTCAM_GOOSEBIT_PYTHON", ROOT / ".venv-goosebit/bin/python"))
USER, PASSWORD = "fleet@example.com", "fleet-manager-secret"
#: gooseBit's UpdateStateEnum, as stored.
STATES = {0: "none", 1: "unknown", 2: "registered", 3: "running", 4: "error", 5: "finished"}

BOOTSTRAP = f"""
import asyncio
from tortoise import Tortoise
from goosebit.db.config import TORTOISE_CONF
from goosebit.users import create_user

async def main():
    await Tortoise.init(config=TORTOISE_CONF)
    await Tortoise.generate_schemas()
    await create_user({USER!r}, {PASSWORD!r}, ["*"])
    await Tortoise.close_connections()

asyncio.run(main())
"""


class GooseBit:
    def __init__(self, folder: Path) -> None:
        if not PYTHON.exists():
            raise AssertionError(f"gooseBit is not installed at {PYTHON}: run `make setup`")
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = folder / "goosebit.yaml"
        settings.write_text(
            f"port: {self.port}\n"
            f"db_uri: sqlite:///{folder / 'db.sqlite3'}\n"
            f"artifacts_dir: {folder / 'artifacts'}\n"
            'poll_time: "00:00:01"\n',
            encoding="utf-8",
        )
        self.env = {**os.environ, "GOOSEBIT_SETTINGS": str(settings)}
        self.process: subprocess.Popen[bytes] | None = None
        self.token = ""

    def start(self) -> GooseBit:
        subprocess.run(
            [str(PYTHON), "-c", BOOTSTRAP], env=self.env, cwd=self.folder, check=True,
            capture_output=True, timeout=120,
        )  # fmt: skip
        log = (self.folder / "goosebit.log").open("wb")
        self.process = subprocess.Popen(
            [str(PYTHON), "-m", "uvicorn", "goosebit:app", "--host", "127.0.0.1",
             "--port", str(self.port)],
            env=self.env, cwd=self.folder, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.token = self._login()
                return self
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        raise AssertionError("gooseBit did not start: " + self.log())

    def log(self) -> str:
        return (self.folder / "goosebit.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def _login(self) -> str:
        form = f"username={USER}&password={PASSWORD}".encode()
        request = urllib.request.Request(f"{self.url}/login", data=form, method="POST")
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
        with urllib.request.urlopen(request, timeout=5) as response:
            return str(json.loads(response.read())["access_token"])

    def api(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
            content_type: str = "application/json") -> Any:  # fmt: skip
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", content_type)
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
        return json.loads(text) if text.strip() else None

    def upload(self, bundle: Path) -> int:
        """Upload a .swu as the fleet manager would; gooseBit parses its sw-description."""
        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="{bundle.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            + bundle.read_bytes()
            + f"\r\n--{boundary}--\r\n".encode()
        )
        answer = self.api("PUT", "/api/v1/software", raw=body,
                          content_type=f"multipart/form-data; boundary={boundary}")  # fmt: skip
        return int(answer["id"])

    def assign(self, device: str, software: int) -> None:
        self.api("PATCH", "/api/v1/devices", {"devices": [device], "software": str(software)})

    def device(self, device: str) -> dict[str, Any]:
        """The device's row in gooseBit's own database (read-only).

        gooseBit 0.2.12's ``GET /api/v1/devices/{id}`` answers 500 once a device has reported an
        update, so the state the server recorded is read where the server keeps it.
        """
        import sqlite3

        uri = f"file:{self.folder / 'db.sqlite3'}?mode=ro"
        with sqlite3.connect(uri, uri=True) as db:
            db.row_factory = sqlite3.Row
            row = db.execute(
                "SELECT d.*, h.model AS hw_model, h.revision AS hw_revision FROM device d "
                "LEFT JOIN hardware h ON h.id = d.hardware_id WHERE d.id = ?",
                (device,),
            ).fetchone()
        if row is None:
            return {}
        found = dict(row)
        found["last_state"] = STATES.get(found["last_state"], str(found["last_state"]))
        return found

    def wait_device(self, device: str, state: str, timeout: float, **fields: Any) -> dict[str, Any]:
        """Until the device's row shows ``state`` and every one of ``fields`` (the device sends
        its feedback and its next configData, with the new version, in separate requests)."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            last = self.device(device)
            if last.get("last_state") == state and all(
                last.get(key) == value for key, value in fields.items()
            ):
                return last
            time.sleep(0.5)
        raise AssertionError(f"device {device} not {state}: {last}; server log: {self.log()}")

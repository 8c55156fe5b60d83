"""A hawkBit DDI client: fleets roll models out with an existing server (hawkBit, gooseBit).

Polls ``{server}/{tenant}/controller/v1/{controller_id}`` with ``Authorization: TargetToken``;
answers a ``configData`` link with the device's attributes (``sw_version`` = the running model
bundle's version, ``hw_boardname``, ``hw_revision``, firmware and model versions); follows a
``deploymentBase`` link: reports ``proceeding``, hands the artifact's download link (with the
sha1 the server gives) to the OTA agent, and when the agent is done (committed after probation,
or refused / rolled back) reports ``closed`` with ``success`` or ``failure`` and the reason.
The server's ``sleep`` sets the next poll; the server's groups, thresholds and emergency stop
decide who gets what.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from intentcam import __version__
from intentcam.config import Settings
from intentcam.ota.agent import OtaAgent
from intentcam.ota.download import Download

log = logging.getLogger(__name__)


def parse_sleep(text: str | None, default: float) -> float:
    """hawkBit's ``HH:MM:SS`` poll interval in seconds (``default`` if absent or malformed)."""
    try:
        hours, minutes, seconds = (int(part) for part in str(text).split(":"))
    except ValueError:
        return default
    return max(1.0, hours * 3600 + minutes * 60 + seconds)


@dataclass
class DdiClient:
    """See the module docstring."""

    base: str
    controller_id: str
    agent: OtaAgent
    settings: Settings
    token: str | None = None
    context: ssl.SSLContext | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    #: The action being installed, so a repeated poll does not start it twice.
    _action: str | None = None
    #: Actions this client reported closed (success or failure); never run again.
    _closed: set[str] = field(default_factory=set)
    last_error: str = ""

    @classmethod
    def from_settings(cls, settings: Settings, agent: OtaAgent) -> DdiClient:
        ota = settings.ota
        assert ota.server_url is not None
        context = None
        if ota.server_url.startswith("https"):
            context = ssl.create_default_context(cafile=str(ota.ca_file) if ota.ca_file else None)
            if ota.cert_file:
                context.load_cert_chain(str(ota.cert_file), str(ota.key_file or ota.cert_file))
        controller = ota.controller_id or settings.device.id
        base = f"{ota.server_url.rstrip('/')}/{ota.tenant}/controller/v1/{controller}"
        return cls(base, controller, agent, settings, ota.read_token(), context)

    # --- HTTP ------------------------------------------------------------------------------

    @property
    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/hal+json"}
        if self.token:
            headers["Authorization"] = f"TargetToken {self.token}"
        return headers

    def _call(self, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = dict(self.headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        timeout = self.settings.ota.download_timeout_s
        with urllib.request.urlopen(request, timeout=timeout, context=self.context) as response:
            raw = response.read(1 << 20)
        return json.loads(raw) if raw.strip() else None

    # --- one poll --------------------------------------------------------------------------

    def poll_once(self) -> float:
        """Poll the controller resource and act on its links; returns the next sleep (s)."""
        default = self.settings.ota.poll_interval_s
        try:
            answer = self._call("GET", self.base)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            self.last_error = f"poll failed: {getattr(exc, 'reason', None) or exc}"
            log.warning("ota: ddi %s", self.last_error)
            return default
        self.last_error = ""
        sleep = parse_sleep(answer.get("config", {}).get("polling", {}).get("sleep"), default)
        links = answer.get("_links", {})
        try:
            if "configData" in links:
                self.send_config_data(links["configData"]["href"])
            if "deploymentBase" in links:
                self.deploy(links["deploymentBase"]["href"])
        except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as exc:
            self.last_error = f"{type(exc).__name__}: {getattr(exc, 'reason', None) or exc}"
            log.warning("ota: ddi %s", self.last_error)
        return min(sleep, default)

    def config_data(self) -> dict[str, str]:
        loaded = self.agent.loaded
        data = {
            "sw_version": loaded.version if loaded else "0.0.0",
            "hw_boardname": self.settings.ota.hw_boardname,
            "hw_revision": self.settings.ota.hw_revision,
            "firmware": __version__,
        }
        if loaded is not None:
            data[f"model_{loaded.role}"] = f"{loaded.id} {loaded.version} serial {loaded.serial}"
        return data

    def send_config_data(self, href: str) -> None:
        body = {"mode": "merge", "data": self.config_data(), "status": _status("closed", "success")}
        self._call("PUT", href, body)

    def deploy(self, href: str) -> None:
        deployment = self._call("GET", href)
        action = str(deployment["id"])
        if action == self._action or action in self._closed:
            # Installing it, or done with it and the server has not read our feedback yet: a
            # poll in between must not run a failed update a second time.
            return
        chunks = deployment["deployment"]["chunks"]
        artifact = chunks[0]["artifacts"][0]
        links = artifact["_links"]
        url = (links.get("download") or links.get("download-http"))["href"]
        feedback = f"{self.base}/deploymentBase/{action}/feedback"
        self._action = action
        self._feedback(feedback, action, "proceeding", "none", ["intentcam: download started"])

        def done(ok: bool, reason: str) -> None:
            self._closed.add(action)
            # Called on the frame loop's thread: the HTTP round trip must not stall a frame.
            threading.Thread(
                target=self._feedback,
                args=(
                    feedback,
                    action,
                    "closed",
                    "success" if ok else "failure",
                    [f"intentcam: {reason}"],
                ),
                name="ota-ddi-feedback",
                daemon=True,
            ).start()
            if not ok:
                self._action = None

        job = Download(url, sha1=artifact.get("hashes", {}).get("sha1"), headers=self.headers)
        problem = self.agent.request_install(job, done)
        if problem is not None:
            self._action = None
            log.info("ota: ddi action %s deferred: %s", action, problem)

    def _feedback(
        self, url: str, action: str, execution: str, finished: str, details: list[str]
    ) -> None:
        body = {"id": action, "status": _status(execution, finished, details)}
        try:
            self._call("POST", url, body)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            log.warning("ota: ddi feedback %s/%s not delivered: %s", execution, finished, exc)

    # --- thread ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ota-ddi", daemon=True)
        self._thread.start()
        log.info("ota: polling %s", self.base)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(self.poll_once())

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _status(execution: str, finished: str, details: list[str] | None = None) -> dict[str, Any]:
    return {
        "execution": execution,
        "result": {"finished": finished},
        "details": details or [],
    }

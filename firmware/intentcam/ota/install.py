"""The install pipeline, one function per step, each with its own failure and reason.

download -> verify (signature, every file's hash) -> anti-downgrade (serial) -> unpack into the
store -> self-test -> switch (state, then the ``current`` link) -> [hot swap and probation in the
running daemon, :mod:`.agent`] -> commit, or rollback with the reason.

Every step reports the state it enters through ``report`` (what the retained ``ota`` topic and
``intentcam ota status`` show). A refused bundle changes nothing that is loaded or current. The
``fault`` hook is called at each step boundary; tests use it to kill the process there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intentcam import __version__
from intentcam.config import Settings
from intentcam.detect import PersonDetector
from intentcam.inference.runtime import Runtime
from intentcam.ota.bundle import (
    UPDATABLE_ROLES,
    BundleError,
    BundleManifest,
    VerifiedBundle,
    trusted_keys,
    verify_bundle,
)
from intentcam.ota.cpio import Limits
from intentcam.ota.download import Download, DownloadLimits, fetch
from intentcam.ota.selftest import SelfTestReport, load_detector, run_selftest
from intentcam.ota.store import ArtifactStore, Installed, OtaState, Trial, installed_of

log = logging.getLogger(__name__)

STATES = (
    "idle",
    "downloading",
    "verifying",
    "self_test",
    "switching",
    "probation",
    "committed",
    "rolled_back",
    "failed",
)
#: Reports a state and details (version, reason, ...).
Reporter = Callable[[str, dict[str, Any]], None]
#: Called with the name of each step before it runs (fault injection in tests).
Fault = Callable[[str], None]


#: ``kill:STEP`` makes the process SIGKILL itself when it reaches STEP (crash-safety tests,
#: like RAUC's and Mender's fault injection); unset in normal operation.
FAULT_ENV = "INTENTCAM_OTA_FAULT"


def fault_from_environment() -> Fault:
    """The fault hook named by :data:`FAULT_ENV`, or one that does nothing."""
    import os
    import signal

    action, _, at = os.environ.get(FAULT_ENV, "").partition(":")
    if action != "kill" or not at:
        return lambda step: None

    def kill(step: str) -> None:
        if step == at:
            log.warning("ota: %s=%s: killing this process at %s", FAULT_ENV, at, step)
            os.kill(os.getpid(), signal.SIGKILL)

    return kill


def _semver(version: str) -> tuple[int, ...]:
    core = version.split("+")[0].split("-")[0]
    return tuple(int(part) for part in core.split("."))


def store_of(settings: Settings) -> ArtifactStore:
    """The artifact store under ``<state_dir>/models``, as configured."""
    return ArtifactStore(
        settings.paths.state_dir / "models",
        keep_versions=settings.ota.keep_versions,
        min_free_bytes=settings.ota.min_free_bytes,
    )


@dataclass
class Prepared:
    """A bundle that passed every step up to the switch, with its loaded detector."""

    bundle: VerifiedBundle
    installed: Installed
    folder: Path
    detector: PersonDetector
    selftest: SelfTestReport

    @property
    def manifest(self) -> BundleManifest:
        return self.bundle.manifest


@dataclass
class Installer:
    """Runs the steps for one device; see the module docstring."""

    settings: Settings
    store: ArtifactStore
    report: Reporter = lambda state, details: None
    runtime: Runtime | None = None
    fault: Fault = lambda step: None

    @property
    def downloads(self) -> Path:
        return self.settings.paths.state_dir / "ota-downloads"

    def prepare(self, job: Download) -> Prepared:
        """download -> verify -> anti-downgrade -> unpack -> self-test; raises :class:`BundleError`."""
        ota = self.settings.ota
        self.fault("download")
        self.report("downloading", {"source": _safe_url(job.url)})
        path = fetch(
            job,
            self.downloads,
            DownloadLimits(ota.max_bundle_bytes, ota.download_timeout_s, ota.download_retries),
        )
        self.fault("verify")
        self.report("verifying", {})
        bundle = self.verify(path)
        self.check_serial(bundle.manifest, self.store.load_state())
        self.fault("unpack")
        folder = self.store.unpack(bundle)
        self.fault("self_test")
        self.report("self_test", {"version": bundle.manifest.version})
        detector, result = self.self_test(bundle.manifest, folder)
        if not result.ok:
            raise BundleError("self_test", result.reason)
        log.info("ota: self-test of %s passed: %s", bundle.manifest.id, result.reason)
        return Prepared(bundle, installed_of(bundle), folder, detector, result)

    def verify(self, path: Path) -> VerifiedBundle:
        keys = trusted_keys(self.settings.ota.trusted_keys_dir)
        limits = Limits(max_total_bytes=self.settings.ota.max_bundle_bytes)
        bundle = verify_bundle(path, keys, limits)
        manifest = bundle.manifest
        if manifest.role not in UPDATABLE_ROLES:
            raise BundleError("verify", f"role {manifest.role!r} is not updatable over the air")
        if _semver(manifest.min_firmware) > _semver(__version__):
            raise BundleError(
                "verify", f"needs firmware {manifest.min_firmware}, this is {__version__}"
            )
        return bundle

    @staticmethod
    def check_serial(manifest: BundleManifest, state: OtaState) -> None:
        """Anti-downgrade: the serial must exceed the installed one unless signed as a rollback."""
        installed = state.serials.get(manifest.role, 0)
        if manifest.serial <= installed and not manifest.rollback:
            raise BundleError(
                "anti_downgrade",
                f"serial {manifest.serial} is not above the installed serial {installed} "
                "(a downgrade needs a bundle signed with rollback = true)",
            )

    def self_test(
        self, manifest: BundleManifest, folder: Path
    ) -> tuple[PersonDetector, SelfTestReport]:
        reason = f"ota: {manifest.id} {manifest.version} (serial {manifest.serial})"
        try:
            detector = load_detector(manifest, folder, self.settings, reason, self.runtime)
        except Exception as exc:  # noqa: BLE001 - a model that does not load is refused
            raise BundleError("self_test", f"model does not load: {exc}") from None
        return detector, run_selftest(detector, manifest, folder)

    def switch(self, prepared: Prepared, *, started: bool) -> OtaState:
        """Record the trial, then point ``current`` at it. ``started``: already loaded (hot swap)."""
        self.fault("switch")
        self.report("switching", {"version": prepared.installed.version})
        state = self.store.load_state()
        state.trial = Trial(**prepared.installed.model_dump(), starts=1 if started else 0)
        role = prepared.installed.role
        state.serials[role] = max(state.serials.get(role, 0), prepared.installed.serial)
        state.note("switch", prepared.installed.label())
        self.store.save_state(state)
        self.store.switch(prepared.installed.sha256)
        self.fault("switched")
        return state

    def commit(self) -> OtaState:
        """The trial becomes the committed version; older ones beyond the kept count go."""
        state = self.store.load_state()
        if state.trial is None:
            return state
        trial = Installed(**state.trial.model_dump())
        if state.committed is not None:
            state.previous.insert(0, state.committed)
        state.committed, state.trial = trial, None
        state.note("commit", trial.label())
        self.store.save_state(state)
        removed = self.store.prune(state, loaded=trial.sha256)
        self.store.save_state(state)
        if removed:
            log.info("ota: removed %d old version(s) from the store", len(removed))
        return state

    def rollback(self, reason: str) -> OtaState:
        """Back to the committed version (or the factory models when there is none)."""
        state = self.store.load_state()
        if state.trial is not None:
            state.note("rollback", state.trial.label(), reason)
            state.trial = None
        elif state.committed is not None:
            # An explicit rollback of a committed version: back to the one before it.
            state.note("rollback", state.committed.label(), reason)
            state.committed = state.previous.pop(0) if state.previous else None
        self.store.save_state(state)
        self.store.switch(state.committed.sha256 if state.committed else None)
        return state


def _safe_url(url: str) -> str:
    """A URL without credentials or query, for logs and telemetry."""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        return f"{parsed.scheme}://{parsed.hostname}{':' + str(parsed.port) if parsed.port else ''}{parsed.path}"
    return url

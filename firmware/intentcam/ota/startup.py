"""Which detector a starting daemon loads, and what it does about an unfinished update.

1. Leftover unpacks from a crash are removed.
2. A trial (a version in probation) that a previous start already loaded never got committed: the
   daemon crashed or was killed during probation, so it is rolled back (boot counting). A trial
   not yet started (installed while no daemon ran) is started now and goes through probation.
3. The ``current`` version is loaded; if its files are corrupt or missing, the committed and then
   the older kept versions are tried, then the packaged (factory) models, then ``auto``. The
   daemon runs ``degraded`` with the reason instead of exiting.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from intentcam.config import Settings
from intentcam.detect import PersonDetector, build_detector
from intentcam.errors import UserError
from intentcam.inference.runtime import Runtime
from intentcam.ota.bundle import BundleError
from intentcam.ota.install import Installer
from intentcam.ota.selftest import load_detector
from intentcam.ota.store import Installed, OtaState

log = logging.getLogger(__name__)


@dataclass
class Active:
    """The detector a daemon starts with, and the OTA facts around it."""

    detector: PersonDetector
    #: The OTA version loaded; ``None`` when the packaged models run.
    installed: Installed | None
    state: OtaState
    #: Why the daemon does not run what it should (corrupt model, rolled back trial).
    degraded: str | None = None
    #: A trial started by this start: it must pass probation.
    in_trial: bool = False
    #: Why a trial was rolled back at this start, if one was.
    rolled_back: str | None = None


def load_active(installer: Installer, runtime: Runtime | None = None) -> Active:
    """See the module docstring. Raises only when no model at all can run."""
    store, settings = installer.store, installer.settings
    if store.clean_staging():
        log.warning("ota: removed an unpack a crash interrupted")
    state = store.load_state()
    problems: list[str] = []
    rolled_back = None
    trial = state.trial
    if trial is not None:
        if trial.starts >= 1:
            reason = f"{trial.label()} was in probation when the daemon last stopped"
            log.warning("ota: rolling back: %s", reason)
            state = installer.rollback(reason)
            problems.append(f"rolled back {reason}")
            rolled_back = reason
        else:
            state.trial = trial.model_copy(update={"starts": 1})
            store.save_state(state)
    current = store.current()
    candidates = _candidates(state, current)
    for installed in candidates:
        try:
            detector = _load(installed, installer, runtime)
        except (UserError, BundleError, OSError) as exc:
            problems.append(f"{installed.label()} does not load: {exc}")
            log.error("ota: %s does not load: %s", installed.label(), exc)
            if state.trial is not None and state.trial.sha256 == installed.sha256:
                state = installer.rollback(f"does not load: {exc}")
            continue
        if installed.sha256 != current:
            store.switch(installed.sha256)
        in_trial = state.trial is not None and state.trial.sha256 == installed.sha256
        return Active(
            detector, installed, state, "; ".join(problems) or None, in_trial, rolled_back
        )
    if current is not None:
        store.switch(None)
    detector = _factory(settings, runtime, problems)
    return Active(detector, None, state, "; ".join(problems) or None, False, rolled_back)


def _candidates(state: OtaState, current: str | None) -> list[Installed]:
    ordered: list[Installed] = []
    if state.trial is not None and state.trial.sha256 == current:
        ordered.append(state.trial)
    ordered += [item for item in (state.committed, *state.previous) if item is not None]
    if current and not any(item.sha256 == current for item in ordered):
        log.warning("ota: current link points at an unknown version; ignoring it")
    seen: set[str] = set()
    unique = []
    for item in ordered:
        if item.sha256 not in seen:
            seen.add(item.sha256)
            unique.append(item)
    return unique


def _load(installed: Installed, installer: Installer, runtime: Runtime | None) -> PersonDetector:
    store = installer.store
    manifest = store.manifest_of(installed.sha256)
    reason = f"ota: {installed.label()}"
    return load_detector(
        manifest, store.path_of(installed.sha256), installer.settings, reason, runtime
    )


def _factory(settings: Settings, runtime: Runtime | None, problems: list[str]) -> PersonDetector:
    try:
        return build_detector(settings, runtime=runtime)
    except UserError as exc:
        if settings.detector.model == "auto":
            raise
        log.error(
            "detector.model = %s does not load (%s); trying auto", settings.detector.model, exc
        )
        problems.append(f"detector.model = {settings.detector.model}: {exc}")
    fallback = settings.model_copy(deep=True)
    fallback.detector.model = "auto"
    return build_detector(fallback, runtime=runtime)

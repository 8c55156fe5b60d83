"""The artifact store on the device: content-addressed versions, a ``current`` link, OTA state.

Layout under ``<state_dir>/models/``::

    store/<sha256>/      one installed bundle: its files, manifest.json, manifest.sig
    store/.staging-*     an unpack in progress (removed on the next start if a crash left it)
    current -> store/<sha256>   the version the daemon loads, switched atomically (rename)
    ota-state.json       committed version, trial (in probation) and its start count, history,
                         the highest serial installed per role

The state file is written atomically (temporary file, fsync, rename, fsync of the folder), the
link is replaced by ``rename(2)`` of a new link over it, so a power cut leaves either the old or
the new value, never a mix. Order of a switch: state first (trial recorded), then the link; a
start that finds a trial it has already started once rolls it back (RAUC's boot counting).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from intentcam.durable import atomic_write, fsync_dir
from intentcam.ota.bundle import MANIFEST, SIGNATURE, BundleError, VerifiedBundle, parse_manifest
from intentcam.ota.cpio import copy_entry
from intentcam.records import iso

log = logging.getLogger(__name__)

STATE_FILE = "ota-state.json"
STAGING_PREFIX = ".staging-"
HISTORY_LENGTH = 20


class Installed(BaseModel):
    """One installed bundle version."""

    model_config = ConfigDict(extra="ignore")

    sha256: str
    id: str
    role: str
    version: str
    serial: int

    def label(self) -> str:
        return f"{self.id} {self.version} (serial {self.serial})"


class Trial(Installed):
    #: Daemon starts with this version loaded; a second start means the first one crashed.
    starts: int = 0


class HistoryItem(BaseModel):
    ts: str
    event: str
    version: str | None = None
    reason: str | None = None


class OtaState(BaseModel):
    """What is installed and trusted; persisted in :data:`STATE_FILE`."""

    model_config = ConfigDict(extra="ignore")

    committed: Installed | None = None
    trial: Trial | None = None
    #: Older committed versions, newest first: what a rollback returns to.
    previous: list[Installed] = Field(default_factory=list)
    #: Highest serial ever installed per role (anti-downgrade).
    serials: dict[str, int] = Field(default_factory=dict)
    history: list[HistoryItem] = Field(default_factory=list)

    def note(self, event: str, version: str | None = None, reason: str | None = None) -> None:
        self.history.insert(
            0, HistoryItem(ts=iso(time.time()), event=event, version=version, reason=reason)
        )
        del self.history[HISTORY_LENGTH:]


@dataclass
class ArtifactStore:
    """See the module docstring. ``root`` is ``<state_dir>/models``."""

    root: Path
    #: Older committed versions kept besides the current one.
    keep_versions: int = 2
    #: Free space that must remain after an unpack.
    min_free_bytes: int = 64 * 1024 * 1024

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def current_link(self) -> Path:
        return self.root / "current"

    @property
    def state_path(self) -> Path:
        return self.root / STATE_FILE

    def path_of(self, sha256: str) -> Path:
        return self.store / sha256

    # --- state -----------------------------------------------------------------------------

    def load_state(self) -> OtaState:
        """The persisted state; an unreadable file is kept aside and a fresh state returned."""
        try:
            return OtaState.model_validate_json(self.state_path.read_bytes())
        except FileNotFoundError:
            return OtaState()
        except (OSError, ValidationError, ValueError) as exc:
            aside = self.state_path.with_suffix(".corrupt")
            log.error("ota: %s unreadable (%s); kept as %s", self.state_path, exc, aside.name)
            try:
                os.replace(self.state_path, aside)
            except OSError:
                pass
            return OtaState()

    def save_state(self, state: OtaState) -> None:
        atomic_write(self.state_path, state.model_dump_json(indent=1).encode())

    # --- link ------------------------------------------------------------------------------

    def current(self) -> str | None:
        """The sha256 the ``current`` link points at, if any."""
        try:
            target = os.readlink(self.current_link)
        except OSError:
            return None
        return Path(target).name

    def switch(self, sha256: str | None) -> None:
        """Point ``current`` at a stored version (``None``: remove it, back to factory models)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if sha256 is None:
            self.current_link.unlink(missing_ok=True)
        else:
            tmp = self.root / f".current.{os.getpid()}.tmp"
            tmp.unlink(missing_ok=True)
            os.symlink(Path("store") / sha256, tmp)
            os.replace(tmp, self.current_link)
        fsync_dir(self.root)

    # --- versions --------------------------------------------------------------------------

    def has(self, sha256: str) -> bool:
        return (self.path_of(sha256) / MANIFEST).is_file()

    def manifest_of(self, sha256: str) -> Any:
        """The manifest of a stored version (re-read from the store, hashes re-checked later)."""
        return parse_manifest((self.path_of(sha256) / MANIFEST).read_bytes())

    def unpack(self, bundle: VerifiedBundle) -> Path:
        """Copy a verified bundle's files into ``store/<digest>/``, re-hashing as it goes.

        Idempotent: an existing complete version is reused. Raises :class:`BundleError`
        (step ``unpack``) when space runs short or a file changed since it was verified.
        """
        target = self.path_of(bundle.digest)
        if self.has(bundle.digest):
            return target
        need = sum(entry.size for entry in bundle.entries.values())
        self.store.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.store).free
        if free - need < self.min_free_bytes:
            raise BundleError(
                "unpack",
                f"not enough free space in {self.store}: {need} bytes needed, {free} free, "
                f"{self.min_free_bytes} must stay free",
            )
        staging = Path(tempfile.mkdtemp(dir=self.store, prefix=STAGING_PREFIX))
        staging.chmod(0o755)
        try:
            self._copy_files(bundle, staging)
            os.replace(staging, target)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise BundleError(
                "unpack", f"cannot write {self.store}: {exc.strerror or exc}"
            ) from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        fsync_dir(self.store)
        return target

    def _copy_files(self, bundle: VerifiedBundle, staging: Path) -> None:
        import hashlib

        with bundle.path.open("rb") as handle:
            for name, expected in bundle.manifest.files.items():
                out_path = staging / name
                with out_path.open("xb") as out:
                    hashing = _HashingWriter(out, hashlib.sha256())
                    copy_entry(handle, bundle.entries[name], hashing)  # type: ignore[arg-type]
                    out.flush()
                    os.fsync(out.fileno())
                if hashing.digest.hexdigest() != expected.sha256:
                    raise BundleError("unpack", f"{name}: changed since it was verified")
        (staging / MANIFEST).write_bytes(bundle.manifest_bytes)
        (staging / SIGNATURE).write_bytes(bundle.signature_bytes)
        fsync_dir(staging)

    def clean_staging(self) -> int:
        """Remove unpacks a crash interrupted; returns how many."""
        removed = 0
        if self.store.is_dir():
            for leftover in self.store.glob(f"{STAGING_PREFIX}*"):
                shutil.rmtree(leftover, ignore_errors=True)
                removed += 1
        return removed

    def prune(self, state: OtaState, loaded: str | None) -> list[str]:
        """Delete versions beyond the kept ones; never the loaded, current, trial or committed."""
        keep = {loaded, self.current()}
        keep |= {item.sha256 for item in (state.committed, state.trial) if item is not None}
        keep |= {item.sha256 for item in state.previous[: self.keep_versions]}
        removed = []
        if self.store.is_dir():
            for path in self.store.iterdir():
                if path.name.startswith(".") or path.name in keep:
                    continue
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
        del state.previous[self.keep_versions :]
        return removed


class _HashingWriter:
    """A file wrapper that hashes what passes through."""

    def __init__(self, out: Any, digest: Any) -> None:
        self.out, self.digest = out, digest

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return int(self.out.write(data))


def describe(installed: Installed | None) -> dict[str, Any] | None:
    """An installed version as telemetry shows it."""
    if installed is None:
        return None
    return {
        "id": installed.id,
        "version": installed.version,
        "serial": installed.serial,
        "sha256": installed.sha256,
    }


def installed_of(bundle: VerifiedBundle) -> Installed:
    manifest = bundle.manifest
    return Installed(
        sha256=bundle.digest,
        id=manifest.id,
        role=manifest.role,
        version=manifest.version,
        serial=manifest.serial,
    )


def dump(state: OtaState) -> str:
    return json.dumps(state.model_dump(mode="json"), indent=1)

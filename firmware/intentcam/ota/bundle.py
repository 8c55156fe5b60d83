"""Model bundles: the signed manifest, its Ed25519 signature, and the ``.swu`` that carries them.

A bundle is an SWUpdate ``.swu`` (cpio newc, :mod:`.cpio`) holding, in order:

``sw-description``  what hawkBit-style servers read (``software.version``, hardware
                    compatibility); unsigned, so the device never trusts it;
``manifest.json``   the canonical manifest (:class:`BundleManifest`): model id, role, family,
                    version, monotonic serial, every file's sha256 and size, tensor spec, labels,
                    minimum firmware, the self-test reference;
``manifest.sig``    an Ed25519 signature over the exact bytes of ``manifest.json``;
then the files the manifest lists (model, Edge TPU build, labels, reference frames).

The device verifies the signature over the bytes it received before it parses them, and every
file against the signed hash, so nothing unsigned is ever read as data. An entry the manifest does
not list is refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from intentcam.config import describe_validation_error
from intentcam.models.manifest import InputSpec, ModelSpec, OperatingPoint, OutputSpec
from intentcam.ota.cpio import ArchiveError, Entry, Limits, check_name, read_entries, read_entry

SW_DESCRIPTION = "sw-description"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
META = (SW_DESCRIPTION, MANIFEST, SIGNATURE)
BUNDLE_FORMAT = 1
SEMVER = r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$"
#: Roles a bundle may update in a running daemon.
UPDATABLE_ROLES = ("person_detector",)


class BundleError(Exception):
    """A bundle is refused; ``step`` names the install step, the message the reason."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(_Strict):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    kind: Literal["model", "edgetpu", "labels", "frame"]


class LabelsRef(_Strict):
    file: str
    #: The label the detector looks for (``person``).
    target: str = "person"


class FrameSummary(_Strict):
    """What the model found on one reference frame when the bundle was built."""

    frame: str
    people: int = Field(ge=0)
    #: Person boxes (x1, y1, x2, y2, normalised), best first.
    boxes: list[tuple[float, float, float, float]] = Field(default_factory=list)


class SelfTest(_Strict):
    """The reference a device checks a new model against before it is switched in."""

    expected: list[FrameSummary] = Field(default_factory=list)
    #: Median time of one detection pass (all tiles of one frame) the device may take.
    latency_budget_ms: float = Field(gt=0)


class BundleManifest(_Strict):
    format: Literal[1] = 1
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    role: Literal["person_detector", "face_detector", "expression", "pose"]
    family: str | None = Field(default=None, pattern=r"^[a-z0-9_]+$")
    version: str = Field(pattern=SEMVER)
    #: Monotonic per role: a device refuses a serial at or below the one it has installed.
    serial: int = Field(ge=1)
    #: Signed permission to install below the installed serial (a deliberate downgrade).
    rollback: bool = False
    min_firmware: str = Field(default="0.0.0", pattern=SEMVER)
    licence: str = ""
    description: str = ""
    model: str
    edgetpu: str | None = None
    labels: LabelsRef | None = None
    input: InputSpec
    outputs: dict[str, OutputSpec]
    operating_point: OperatingPoint | None = None
    files: dict[str, FileEntry]
    selftest: SelfTest
    created: str = ""

    def model_spec(self) -> ModelSpec:
        """The model as the loaders know it, its files named as in the bundle (and the store)."""
        labels = None
        if self.labels is not None:
            labels = {
                "file": self.labels.file,
                "sha256": self.files[self.labels.file].sha256,
                "target": self.labels.target,
            }
        edgetpu = None
        if self.edgetpu is not None:
            entry = self.files[self.edgetpu]
            edgetpu = {"file": self.edgetpu, "sha256": entry.sha256, "size": entry.size or None}
        model = self.files[self.model]
        return ModelSpec.model_validate(
            {
                "id": self.id,
                "role": self.role,
                "family": self.family,
                "version": self.version,
                "file": self.model,
                "sha256": model.sha256,
                "size": model.size or None,
                "licence": self.licence or "see bundle",
                "description": self.description,
                "labels": labels,
                "input": self.input,
                "outputs": self.outputs,
                "sources": [{"kind": "url", "url": f"ota:{self.id}@{self.version}"}],
                "edgetpu": edgetpu,
                "operating_point": self.operating_point,
            }
        )

    def frames(self) -> list[str]:
        return [name for name, entry in self.files.items() if entry.kind == "frame"]


def canonical(data: dict[str, Any]) -> bytes:
    """The one byte form of a manifest that is signed: sorted keys, no spaces, ASCII."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def parse_manifest(raw: bytes) -> BundleManifest:
    """Validate the manifest bytes; one-line :class:`BundleError` naming the bad fields."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleError("verify", f"{MANIFEST} is not JSON: {exc}") from None
    try:
        manifest = BundleManifest.model_validate(data)
    except ValidationError as exc:
        raise BundleError(
            "verify", f"{MANIFEST}: " + "; ".join(describe_validation_error(exc))
        ) from None
    for name in (manifest.model, manifest.edgetpu, manifest.labels and manifest.labels.file):
        if name and name not in manifest.files:
            raise BundleError("verify", f"{MANIFEST}: {name!r} is named but not in files")
    for name in manifest.files:
        try:
            check_name(name)
        except ArchiveError as exc:
            raise BundleError("verify", f"{MANIFEST}: {exc}") from None
    return manifest


def sw_description(manifest: BundleManifest, hardware: list[tuple[str, str]]) -> bytes:
    """SWUpdate's libconfig header, as hawkBit-style servers (gooseBit) parse it."""
    boards: dict[str, list[str]] = {}
    for board, revision in hardware:
        boards.setdefault(board, []).append(revision)
    lines = [
        "software =",
        "{",
        f'\tversion = "{manifest.version}";',
        f'\tdescription = "intentcam {manifest.role} {manifest.id} serial {manifest.serial}";',
    ]
    for board, revisions in boards.items():
        listed = ", ".join(f'"{revision}"' for revision in revisions)
        lines += [f"\t{board} = {{", f"\t\thardware-compatibility = [ {listed} ];"]
        lines += ["\t\tfiles: (", *_file_lines(manifest), "\t\t);", "\t};"]
    lines.append("};")
    return ("\n".join(lines) + "\n").encode("ascii")


def _file_lines(manifest: BundleManifest) -> Iterator[str]:
    names = list(manifest.files)
    for index, name in enumerate(names):
        entry = manifest.files[name]
        comma = "," if index < len(names) - 1 else ""
        yield (
            f'\t\t\t{{ filename = "{name}"; type = "intentcam-{entry.kind}"; '
            f'sha256 = "{entry.sha256}"; }}{comma}'
        )


# --- signatures ---------------------------------------------------------------------------------


def key_id(public_key: Any) -> str:
    """A short fingerprint of an Ed25519 public key (sha256 of its raw bytes)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def encode_signature(signature: bytes, public_key: Any) -> bytes:
    body = {
        "alg": "ed25519",
        "key_id": key_id(public_key),
        "sig": base64.b64encode(signature).decode(),
    }
    return canonical(body)


def load_public_key(path: Path) -> Any:
    """An Ed25519 public key from a PEM file; :class:`BundleError` if it is not one."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise BundleError("verify", f"{path}: not a readable PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError("verify", f"{path}: not an Ed25519 public key")
    return key


def trusted_keys(location: Path) -> list[Any]:
    """The keys in a trusted-keys folder (``*.pub``, ``*.pem``), or one key file."""
    if location.is_file():
        return [load_public_key(location)]
    if not location.is_dir():
        raise BundleError("verify", f"trusted keys {location}: no such folder or file")
    paths = sorted([*location.glob("*.pub"), *location.glob("*.pem")])
    if not paths:
        raise BundleError("verify", f"trusted keys {location}: no *.pub key in it")
    return [load_public_key(path) for path in paths]


def check_signature(manifest_bytes: bytes, signature_bytes: bytes, keys: list[Any]) -> str:
    """The id of the trusted key that signed ``manifest_bytes``; :class:`BundleError` otherwise."""
    from cryptography.exceptions import InvalidSignature

    try:
        body = json.loads(signature_bytes)
        signature = base64.b64decode(body["sig"], validate=True)
        if body.get("alg") != "ed25519":
            raise ValueError(f"algorithm {body.get('alg')!r}")
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError("verify", f"{SIGNATURE} is malformed ({exc})") from None
    for key in keys:
        try:
            key.verify(signature, manifest_bytes)
        except InvalidSignature:
            continue
        return key_id(key)
    raise BundleError(
        "verify",
        f"signature (key {str(body.get('key_id'))[:16]}) does not match any trusted key "
        "(tampered manifest, or signed with another key)",
    )


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose signature and every file hash were checked."""

    path: Path
    manifest: BundleManifest
    manifest_bytes: bytes
    signature_bytes: bytes
    entries: dict[str, Entry]
    signed_by: str

    @property
    def digest(self) -> str:
        """Its content address: sha256 of the signed manifest bytes."""
        return hashlib.sha256(self.manifest_bytes).hexdigest()


def _hash_entry(handle: BinaryIO, entry: Entry) -> str:
    digest = hashlib.sha256()
    handle.seek(entry.offset)
    left = entry.size
    while left:
        block = handle.read(min(1 << 16, left))
        if not block:
            break
        digest.update(block)
        left -= len(block)
    return digest.hexdigest()


def verify_bundle(path: Path, keys: list[Any], limits: Limits | None = None) -> VerifiedBundle:
    """Check the archive, the signature over the manifest, and every file's size and hash.

    Every refusal is a :class:`BundleError` with the step ``verify`` and a one-line reason.
    """
    limits = limits or Limits()
    try:
        size = path.stat().st_size
        handle = path.open("rb")
    except OSError as exc:
        raise BundleError("verify", f"{path}: {exc.strerror or exc}") from None
    with handle:
        if size > limits.max_total_bytes:
            raise BundleError("verify", f"{path}: {size} bytes exceeds the bundle size limit")
        try:
            entries = list(read_entries(handle, size, limits))
            names = [entry.name for entry in entries]
            if not names or names[0] != SW_DESCRIPTION:
                raise BundleError("verify", f"{SW_DESCRIPTION} must be the first entry")
            by_name = {entry.name: entry for entry in entries}
            if SIGNATURE not in by_name:
                raise BundleError("verify", f"no signature ({SIGNATURE} missing): refused")
            if MANIFEST not in by_name:
                raise BundleError("verify", f"no {MANIFEST} in the bundle")
            if by_name[MANIFEST].size > 1 << 20 or by_name[SIGNATURE].size > 4096:
                raise BundleError("verify", "manifest or signature entry is too large")
            manifest_bytes = read_entry(handle, by_name[MANIFEST])
            signature_bytes = read_entry(handle, by_name[SIGNATURE])
        except ArchiveError as exc:
            raise BundleError("verify", f"{path.name}: {exc}") from None
        signed_by = check_signature(manifest_bytes, signature_bytes, keys)
        manifest = parse_manifest(manifest_bytes)
        unsigned = [name for name in by_name if name not in META and name not in manifest.files]
        if unsigned:
            raise BundleError("verify", f"entry {unsigned[0]!r} is not in the signed manifest")
        for name, expected in manifest.files.items():
            entry = by_name.get(name)
            if entry is None:
                raise BundleError("verify", f"{name}: listed in the manifest but missing")
            if entry.size != expected.size:
                raise BundleError(
                    "verify", f"{name}: {entry.size} bytes, the manifest says {expected.size}"
                )
            actual = _hash_entry(handle, entry)
            if actual != expected.sha256:
                raise BundleError("verify", f"{name}: sha256 {actual[:16]}… does not match")
    return VerifiedBundle(path, manifest, manifest_bytes, signature_bytes, by_name, signed_by)

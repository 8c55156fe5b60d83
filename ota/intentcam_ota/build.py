"""Building a signed bundle: the model files, the manifest with its self-test reference, the .swu.

The tensor spec, labels and operating point come from the packaged model manifest entry the
model is an update of (``--spec-from``, default ``--id``). The self-test reference is measured
here, on the reference frames, with the same detector code the device runs (CPU delegate), so a
device compares like with like.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intentcam.config import Settings
from intentcam.models.manifest import load_manifest
from intentcam.models.store import sha256_of
from intentcam.ota.bundle import (
    MANIFEST,
    SIGNATURE,
    SW_DESCRIPTION,
    BundleError,
    BundleManifest,
    SelfTest,
    canonical,
    encode_signature,
    parse_manifest,
    sw_description,
)
from intentcam.ota.cpio import write_archive
from intentcam.ota.selftest import load_detector, measure, read_frame
from intentcam.records import iso
from intentcam_ota.keys import load_private

#: Devices are slower than a build host (a Pi 4 runs a model 3-10x slower than a desktop CPU).
BUDGET_FACTOR = 10.0
MIN_BUDGET_MS = 500.0


@dataclass
class BuildRequest:
    model: Path
    id: str
    version: str
    serial: int
    key: Path
    out: Path
    edgetpu: Path | None = None
    labels: Path | None = None
    spec_from: str | None = None
    frames: list[Path] = field(default_factory=list)
    latency_budget_ms: float | None = None
    min_firmware: str = "0.0.0"
    rollback: bool = False
    hardware: list[tuple[str, str]] = field(default_factory=lambda: [("intentcam", "1")])
    manifest_path: Path | None = None
    #: Hold the model to an earlier bundle's self-test reference (same frames) instead of its
    #: own results: a new version must find what the running one found.
    reference_from: Path | None = None


def _entry(path: Path, kind: str) -> dict[str, Any]:
    return {"sha256": sha256_of(path), "size": path.stat().st_size, "kind": kind}


def _require(path: Path | None, flag: str) -> None:
    if path is not None and not path.is_file():
        raise BundleError("build", f"{flag} {path}: no such file")


def build_bundle(request: BuildRequest) -> BundleManifest:
    """Write the signed ``.swu``; returns its manifest. Errors are :class:`BundleError`."""
    for path, flag in (
        (request.model, "--model"),
        (request.edgetpu, "--edgetpu"),
        (request.labels, "--labels"),
        (request.key, "--key"),
    ):
        _require(path, flag)
    for frame in request.frames:
        _require(frame, "--frames")
    key = load_private(request.key)
    packaged = load_manifest(request.manifest_path)
    base = packaged.get(request.spec_from or request.id)
    labels_path = request.labels or (packaged.labels_path(base) if base.labels else None)
    files: dict[str, tuple[Path, str]] = {request.model.name: (request.model, "model")}
    if request.edgetpu is not None:
        files[request.edgetpu.name] = (request.edgetpu, "edgetpu")
    if labels_path is not None:
        files[labels_path.name] = (labels_path, "labels")
    for index, frame in enumerate(request.frames):
        files[f"frame-{index}{frame.suffix.lower()}"] = (frame, "frame")
    data: dict[str, Any] = {
        "id": request.id,
        "role": base.role,
        "family": base.family,
        "version": request.version,
        "serial": request.serial,
        "rollback": request.rollback,
        "min_firmware": request.min_firmware,
        "licence": base.licence,
        "description": base.description,
        "model": request.model.name,
        "edgetpu": request.edgetpu.name if request.edgetpu else None,
        "labels": (
            {"file": labels_path.name, "target": (base.labels.target or "person")}
            if labels_path is not None and base.labels is not None
            else None
        ),
        "input": base.input.model_dump(mode="json"),
        "outputs": {
            k: v.model_dump(mode="json", exclude_none=True) for k, v in base.outputs.items()
        },
        "operating_point": (
            base.operating_point.model_dump(mode="json") if base.operating_point else None
        ),
        "files": {name: _entry(path, kind) for name, (path, kind) in files.items()},
        "selftest": {"expected": [], "latency_budget_ms": 1.0},
        "created": iso(time.time()),
    }
    draft = parse_manifest(canonical(data))
    reference = _reference(draft, files, request)
    if request.reference_from is not None:
        reference = SelfTest(
            expected=_earlier_reference(request.reference_from, files),
            latency_budget_ms=reference.latency_budget_ms,
        )
    data["selftest"] = reference.model_dump(mode="json")
    manifest_bytes = canonical(data)
    manifest = parse_manifest(manifest_bytes)
    signature = encode_signature(key.sign(manifest_bytes), key.public_key())
    members: list[tuple[str, Path | bytes]] = [
        (SW_DESCRIPTION, sw_description(manifest, request.hardware)),
        (MANIFEST, manifest_bytes),
        (SIGNATURE, signature),
        *((name, path) for name, (path, _) in files.items()),
    ]
    request.out.parent.mkdir(parents=True, exist_ok=True)
    partial = request.out.with_name(f".{request.out.name}.partial")
    with partial.open("wb") as out:
        write_archive(out, members)
    partial.replace(request.out)
    return manifest


def _reference(
    draft: BundleManifest, files: dict[str, tuple[Path, str]], request: BuildRequest
) -> SelfTest:
    """Run the model on the reference frames as a device would, on this machine's CPU."""
    settings = Settings()
    settings.detector.delegate = "cpu"
    with tempfile.TemporaryDirectory(prefix="intentcam-ota-build-") as tmp:
        folder = Path(tmp)
        for name, (path, kind) in files.items():
            if kind != "frame":
                shutil.copyfile(path, folder / name)
        try:
            detector = load_detector(draft, folder, settings, "bundle build")
        except Exception as exc:  # noqa: BLE001 - any load failure is a build error
            raise BundleError("build", f"the model does not load: {exc}") from None
        frames = [
            (name, read_frame(path)) for name, (path, kind) in files.items() if kind == "frame"
        ]
        measured = frames or [("blank", _blank())]
        summaries, latency = measure(detector, measured)
    budget = request.latency_budget_ms or max(MIN_BUDGET_MS, BUDGET_FACTOR * latency)
    return SelfTest(expected=summaries if frames else [], latency_budget_ms=round(budget, 3))


def _earlier_reference(bundle: Path, files: dict[str, tuple[Path, str]]) -> list[Any]:
    """The expected summaries of an earlier bundle, for the same reference frames."""
    from intentcam.ota.cpio import ArchiveError, read_entries, read_entry

    try:
        with bundle.open("rb") as handle:
            entries = {e.name: e for e in read_entries(handle, bundle.stat().st_size)}
            manifest = parse_manifest(read_entry(handle, entries[MANIFEST]))
    except (OSError, KeyError, ArchiveError) as exc:
        raise BundleError("build", f"--reference-from {bundle}: unreadable ({exc})") from None
    expected = manifest.selftest.expected
    ours = {name: path for name, (path, kind) in files.items() if kind == "frame"}
    for summary in expected:
        theirs = manifest.files.get(summary.frame)
        if (
            summary.frame not in ours
            or theirs is None
            or theirs.sha256 != sha256_of(ours[summary.frame])
        ):
            raise BundleError(
                "build", f"--reference-from {bundle}: pass the same --frames in the same order"
            )
    return list(expected)


def _blank() -> Any:
    import numpy as np

    return np.zeros((360, 640, 3), np.uint8)

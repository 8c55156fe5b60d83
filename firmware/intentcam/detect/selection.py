"""``detector.model = "auto"``: the detector the measurements say is best for the hardware found.

The manifest's ``[auto]`` table ranks detectors per kind of hardware, best first, from the
side-by-side measurements in the README (accuracy on every shared ground-truth sequence, pipeline
speed against SSD v1 with auto tiling). On a device with a working Edge TPU the first Edge TPU
candidate whose compiled variant is installed wins; otherwise the first CPU candidate that is
installed and whose runtime imports (an ONNX model needs onnxruntime). Every skipped candidate
is named in the reason, which goes to the log, ``status`` and ``health``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from intentcam.config import Settings
from intentcam.errors import ModelError
from intentcam.inference.edgetpu import load_edgetpu
from intentcam.inference.onnx import import_onnxruntime
from intentcam.inference.runtime import Runtime, import_runtime
from intentcam.models.manifest import Manifest, ModelSpec
from intentcam.models.store import verified_model_path

AUTO = "auto"


@dataclass(frozen=True)
class Selection:
    """The detector model to load, and why."""

    spec: ModelSpec
    reason: str


def _cpu_problem(spec: ModelSpec, model_dir: Path) -> str | None:
    try:
        verified_model_path(spec, model_dir)
        if spec.file.endswith(".onnx"):
            import_onnxruntime()
    except ModelError as exc:
        return str(exc)
    return None


def select_detector(
    settings: Settings, manifest: Manifest, runtime: Runtime | None = None
) -> Selection:
    """The manifest entry for ``detector.model`` (resolving ``auto``); see the module docstring."""
    wanted = settings.detector.model
    if wanted != AUTO:
        return Selection(manifest.get(wanted), f"detector.model = {wanted}")
    model_dir = settings.paths.models
    skipped: list[str] = []
    if settings.detector.delegate != "cpu":
        for model_id in manifest.auto.edgetpu:
            spec = manifest.get(model_id)
            try:
                _, problem = load_edgetpu(spec, model_dir, runtime or import_runtime)
            except ModelError as exc:  # no TFLite runtime at all
                problem = str(exc)
            if problem is None:
                return Selection(spec, f"auto: {model_id} on the Edge TPU")
            skipped.append(f"no Edge TPU for {model_id}: {problem}")
    for model_id in manifest.auto.cpu:
        spec = manifest.get(model_id)
        problem = _cpu_problem(spec, model_dir)
        if problem is None:
            why = f"auto: {model_id} on the CPU"
            return Selection(spec, why + (f" ({'; '.join(skipped)})" if skipped else ""))
        skipped.append(f"{model_id}: {problem}")
    raise ModelError("detector.model = auto, but no candidate can run: " + "; ".join(skipped))

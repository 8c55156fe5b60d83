"""Person detection: one :class:`PersonDetector` interface, the family chosen by the manifest."""

from __future__ import annotations

from collections.abc import Callable

from intentcam.config import Settings
from intentcam.detect import ssd
from intentcam.detect.base import DetectStats, PersonDetector
from intentcam.detect.detections import Detections
from intentcam.detect.ssd import DetectorSettings, SsdPersonDetector
from intentcam.errors import ModelError
from intentcam.inference.model import TFLiteModel, load_model
from intentcam.inference.runtime import Runtime
from intentcam.models.manifest import Manifest, ModelSpec, load_manifest
from intentcam.models.store import verified_labels

__all__ = ["DetectStats", "Detections", "DetectorSettings", "PersonDetector", "build_detector"]

#: Builds a detector of one family from its loaded model, labels, settings and target label.
Factory = Callable[[TFLiteModel, list[str], DetectorSettings, str], PersonDetector]

#: Manifest ``family`` -> the detector class that decodes it.
FAMILIES: dict[str, Factory] = {
    ssd.FAMILY: SsdPersonDetector,
}


def build_detector(
    settings: Settings, manifest: Manifest | None = None, runtime: Runtime | None = None
) -> PersonDetector:
    """The person detector named by ``detector.model``, loaded from the verified model dir.

    Built from the manifest entry (its ``family`` picks the decoder) rather than hard-wired, so an
    OTA update can swap the model, and a new family is one entry in :data:`FAMILIES`.
    """
    manifest = manifest or load_manifest(settings.paths.manifest)
    spec = manifest.get(settings.detector.model)
    factory = _factory_for(spec)
    labels = verified_labels(manifest, spec)
    model = load_model(
        spec,
        settings.paths.models,
        threads=settings.detector.threads,
        delegate=settings.detector.delegate,
        runtime=runtime,
    )
    target = spec.labels.target if spec.labels and spec.labels.target else "person"
    return factory(model, labels, DetectorSettings.from_config(settings.detector), target)


def _factory_for(spec: ModelSpec) -> Factory:
    if spec.role != "person_detector":
        raise ModelError(
            f"model {spec.id!r} is a {spec.role}, not a person detector (detector.model)"
        )
    family = spec.family or ssd.FAMILY
    if family not in FAMILIES:
        raise ModelError(
            f"model {spec.id!r}: unknown detector family {family!r} "
            f"(known: {', '.join(sorted(FAMILIES))})"
        )
    return FAMILIES[family]

"""Person detection: one :class:`PersonDetector` interface, the family chosen by the manifest."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from intentcam.config import Settings
from intentcam.detect import nanodet, ssd, yolox
from intentcam.detect.base import DetectStats, PersonDetector
from intentcam.detect.detections import Detections
from intentcam.detect.nanodet import NanodetPersonDetector
from intentcam.detect.selection import select_detector
from intentcam.detect.ssd import SsdPersonDetector
from intentcam.detect.tiled import DetectorSettings
from intentcam.detect.yolox import YoloxPersonDetector
from intentcam.errors import ModelError
from intentcam.inference.base import Model
from intentcam.inference.model import load_model
from intentcam.inference.runtime import Runtime
from intentcam.models.manifest import Manifest, ModelSpec, load_manifest
from intentcam.models.store import verified_labels

log = logging.getLogger(__name__)

__all__ = [
    "DetectStats",
    "Detections",
    "DetectorSettings",
    "PersonDetector",
    "build_detector",
    "detector_from_spec",
]

#: Builds a detector of one family from its loaded model, labels, settings, target label and
#: why this model was selected.
Factory = Callable[[Model, list[str], DetectorSettings, str, str], PersonDetector]

#: Manifest ``family`` -> the detector class that decodes it.
FAMILIES: dict[str, Factory] = {
    ssd.FAMILY: SsdPersonDetector,
    yolox.FAMILY: YoloxPersonDetector,
    nanodet.FAMILY: NanodetPersonDetector,
}


def build_detector(
    settings: Settings, manifest: Manifest | None = None, runtime: Runtime | None = None
) -> PersonDetector:
    """The person detector named by ``detector.model``, loaded from the verified model dir.

    Built from the manifest entry (its ``family`` picks the decoder) rather than hard-wired, so an
    OTA update can swap the model, and a new family is one entry in :data:`FAMILIES`.
    """
    manifest = manifest or load_manifest(settings.paths.manifest)
    selection = select_detector(settings, manifest, runtime)
    spec = selection.spec
    _factory_for(spec)  # a wrong role or family is reported before the labels are read
    labels = verified_labels(manifest, spec)
    return detector_from_spec(
        spec, settings.paths.models, labels, settings, selection.reason, runtime=runtime
    )


def detector_from_spec(
    spec: ModelSpec,
    model_dir: Path,
    labels: list[str],
    settings: Settings,
    reason: str,
    *,
    runtime: Runtime | None = None,
) -> PersonDetector:
    """A person detector for one model entry whose files are in ``model_dir``.

    Used for the packaged models and for OTA bundles, whose entries come from a signed bundle
    manifest and whose files live in the artifact store.
    """
    factory = _factory_for(spec)
    model = load_model(
        spec,
        model_dir,
        threads=settings.detector.threads,
        delegate=settings.detector.delegate,
        runtime=runtime,
    )
    target = spec.labels.target if spec.labels and spec.labels.target else "person"
    assert spec.operating_point is not None  # the manifest requires one for detectors
    detector_settings = DetectorSettings.from_config(settings.detector, spec.operating_point)
    detector = factory(model, labels, detector_settings, target, reason)
    log.info("person detector %s (%s)", spec.id, reason)
    return detector


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

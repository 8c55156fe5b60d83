"""Person detection: a detector built from the model manifest, with tiling and NMS."""

from __future__ import annotations

from intentcam.config import Settings
from intentcam.detect.detections import Detections
from intentcam.detect.ssd import DetectorSettings, SsdPersonDetector
from intentcam.inference.model import load_model
from intentcam.inference.runtime import Runtime
from intentcam.models.manifest import Manifest, load_manifest
from intentcam.models.store import verified_labels

__all__ = ["Detections", "DetectorSettings", "SsdPersonDetector", "build_detector"]


def build_detector(settings: Settings, manifest: Manifest | None = None,
                   runtime: Runtime | None = None) -> SsdPersonDetector:
    """The person detector named by ``detector.model``, loaded from the verified model dir.

    Built from the manifest entry rather than hard-wired, so an OTA update can swap the model.
    """
    manifest = manifest or load_manifest(settings.paths.manifest)
    spec = manifest.get(settings.detector.model)
    labels = verified_labels(manifest, spec)
    model = load_model(spec, settings.paths.models, threads=settings.detector.threads,
                       delegate=settings.detector.delegate, runtime=runtime)
    config = settings.detector
    detector_settings = DetectorSettings(
        score_threshold=config.score_threshold,
        min_box_size=config.min_box_size,
        tiling=config.tiling,
        tile_overlap=config.tile_overlap,
        nms_iou=config.nms_iou,
        tile_full_frame=config.tile_full_frame,
    )
    target = spec.labels.target if spec.labels and spec.labels.target else "person"
    return SsdPersonDetector(model, labels, detector_settings, target_label=target)

"""Building the face analyser from the config and the model manifest."""

from __future__ import annotations

from intentcam.config import Settings
from intentcam.faces.blazeface import BlazeFace
from intentcam.faces.expression import ExpressionModel
from intentcam.faces.quality import QualitySettings
from intentcam.inference.model import load_model
from intentcam.models import load_manifest
from intentcam.sentiment.analyzer import AnalyzerSettings, FaceAnalyzer

#: The manifest id of the expression model that expression inference loads.
EXPRESSION_MODEL = "fer_mini_xception"


def build_face_analyzer(settings: Settings) -> FaceAnalyzer | None:
    """The analyser, or ``None`` unless ``privacy.expression_inference`` is on (the default)."""
    if not settings.privacy.expression_inference:
        return None
    manifest = load_manifest(settings.paths.manifest)
    faces = settings.faces
    detector = BlazeFace(
        load_model(manifest.get(faces.model), settings.paths.models, threads=1, delegate="cpu")
    )
    expression = ExpressionModel(
        load_model(manifest.get(EXPRESSION_MODEL), settings.paths.models, threads=1, delegate="cpu")
    )
    return FaceAnalyzer(
        detector,
        expression,
        QualitySettings.from_config(faces),
        AnalyzerSettings.from_config(faces),
    )

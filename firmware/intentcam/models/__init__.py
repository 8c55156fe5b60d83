"""Model manifest, fetching and verification (see models_tflite/manifest.toml)."""

from intentcam.models.manifest import Manifest, ModelSpec, load_manifest
from intentcam.models.store import Fetcher, ModelStatus, installed_models, verified_model_path

__all__ = [
    "Fetcher",
    "Manifest",
    "ModelSpec",
    "ModelStatus",
    "installed_models",
    "load_manifest",
    "verified_model_path",
]

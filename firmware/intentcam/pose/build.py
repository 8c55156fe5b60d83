"""Building the pose sampler from the config and the model manifest."""

from __future__ import annotations

from intentcam.config import Settings
from intentcam.inference.model import load_model
from intentcam.models import load_manifest
from intentcam.pose.movenet import PoseModel
from intentcam.pose.sampler import PoseSampler


def build_pose_sampler(settings: Settings) -> PoseSampler:
    """The sampler with MoveNet loaded (the camera view builds it when someone first stands at
    a shelf zone: without shelves the model is never loaded)."""
    manifest = load_manifest(settings.paths.manifest)
    model = load_model(
        manifest.get("movenet_lightning"), settings.paths.models, threads=1, delegate="cpu"
    )
    return PoseSampler.from_config(PoseModel(model), settings.shelf)

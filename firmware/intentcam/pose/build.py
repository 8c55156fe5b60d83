"""Building the pose sampler from the config and the model manifest."""

from __future__ import annotations

from intentcam.config import Settings
from intentcam.inference.model import load_model
from intentcam.models import load_manifest
from intentcam.pose.movenet import PoseModel
from intentcam.pose.sampler import PoseSampler


def build_pose_model(settings: Settings, threads: int = 1) -> PoseModel:
    """MoveNet as ``[shelf]`` configures it (the crop), on the CPU."""
    manifest = load_manifest(settings.paths.manifest)
    model = load_model(
        manifest.get("movenet_lightning"), settings.paths.models, threads=threads, delegate="cpu"
    )
    return PoseModel(model, settings.shelf.crop_top, settings.shelf.crop_above)


def build_pose_sampler(settings: Settings) -> PoseSampler:
    """The sampler with MoveNet loaded (the camera view builds it at start when shelf zones are
    configured, else when one added live first has someone at it: without shelves the model is
    never loaded)."""
    return PoseSampler.from_config(build_pose_model(settings), settings.shelf)

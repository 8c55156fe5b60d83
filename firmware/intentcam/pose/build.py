"""Building the pose sampler from the config and the model manifest."""

from __future__ import annotations

from intentcam.config import Settings
from intentcam.errors import UserError
from intentcam.inference.model import load_model
from intentcam.models import load_manifest, verified_model_path
from intentcam.pose.movenet import PoseModel
from intentcam.pose.sampler import PoseSampler

#: The manifest id of the pose model the shelf zones need.
POSE_MODEL = "movenet_lightning"


def build_pose_model(settings: Settings, threads: int = 1) -> PoseModel:
    """MoveNet as ``[shelf]`` configures it (the crop), on the CPU."""
    manifest = load_manifest(settings.paths.manifest)
    model = load_model(
        manifest.get(POSE_MODEL), settings.paths.models, threads=threads, delegate="cpu"
    )
    return PoseModel(model, settings.shelf.crop_top, settings.shelf.crop_above)


def build_pose_sampler(settings: Settings) -> PoseSampler:
    """The sampler with MoveNet loaded (the camera view builds it at start when shelf zones are
    configured, else when one added live first has someone at it: without shelves the model is
    never loaded)."""
    return PoseSampler.from_config(build_pose_model(settings), settings.shelf)


def pose_model_problem(settings: Settings) -> str | None:
    """Why the pose model could not be loaded (not installed, or its hash does not match), or
    ``None``: checked before a shelf zone is set live, so that a zone whose hands nothing could
    see is refused with the reason instead."""
    try:
        verified_model_path(
            load_manifest(settings.paths.manifest).get(POSE_MODEL), settings.paths.models
        )
    except UserError as exc:
        return str(exc)
    return None

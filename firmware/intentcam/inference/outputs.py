"""Matching a model's output tensors to the manifest's names: by name and shape, never position."""

from __future__ import annotations

from typing import Any

from intentcam.errors import ModelError
from intentcam.models.manifest import OutputSpec


def map_outputs(specs: dict[str, OutputSpec], details: list[dict[str, Any]]) -> dict[str, int]:
    """Tensor index for each manifest output, matched by name and shape, never by position.

    An output spec may give the tensor ``name``; it must exist with the expected shape. Without a
    name (or if a re-exported model renamed its tensors) the shape must identify one tensor.
    """
    mapping: dict[str, int] = {}
    used: set[int] = set()
    for key, spec in specs.items():
        wanted_name = spec.name
        shape = tuple(spec.shape)
        by_name = [d for d in details if wanted_name and d["name"] == wanted_name]
        if by_name:
            found = by_name[0]
            if tuple(found["shape"]) != shape:
                raise ModelError(
                    f"output {key!r} ({wanted_name}) has shape {tuple(found['shape'])},"
                    f" the manifest says {shape}"
                )
        else:
            same_shape = [
                d for d in details if tuple(d["shape"]) == shape and d["index"] not in used
            ]
            if len(same_shape) != 1:
                names = [d["name"] for d in same_shape] or "none"
                raise ModelError(
                    f"output {key!r}: cannot identify the tensor of shape {shape} "
                    f"(candidates: {names}); give its name in the manifest"
                )
            found = same_shape[0]
        mapping[key] = found["index"]
        used.add(found["index"])
    return mapping

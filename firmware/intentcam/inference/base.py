"""The one interface a loaded model offers, whatever runtime runs it (LiteRT, ONNX Runtime)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from intentcam.models.manifest import ModelSpec


class Model(Protocol):
    """A loaded, verified manifest model: pixels in, named outputs out."""

    spec: ModelSpec

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) the image must be resized to."""
        ...

    def invoke(self, pixels: np.ndarray) -> None:
        """Run on an image already resized to :attr:`input_size` (uint8, HxWxC)."""
        ...

    def output(self, key: str) -> np.ndarray:
        """The manifest-named output of the last invoke."""
        ...

    def describe(self) -> dict[str, Any]:
        """Id, version, runtime, delegate, why, threads: for logs, health and status."""
        ...

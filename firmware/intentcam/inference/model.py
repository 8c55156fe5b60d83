"""Loading a manifest model: a TFLite model here (LiteRT), an ONNX one in :mod:`.onnx`.

Inputs go through the tensor's own quantisation (:mod:`.encoder`), outputs come out by name
(:mod:`.outputs`). :func:`load_model` picks the runtime from the model file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from intentcam.errors import ModelError
from intentcam.inference.base import Model
from intentcam.inference.edgetpu import DelegateChoice, DelegateMode, choose_delegate
from intentcam.inference.encoder import InputEncoder, check_input_shape, input_lookup_table
from intentcam.inference.outputs import map_outputs
from intentcam.inference.runtime import Runtime, import_runtime
from intentcam.models.manifest import ModelSpec

__all__ = ["Model", "TFLiteModel", "input_lookup_table", "load_model", "map_outputs"]

log = logging.getLogger(__name__)

_DTYPES = {"uint8": np.uint8, "int8": np.int8, "float32": np.float32}


@dataclass
class TFLiteModel:
    """An allocated interpreter for one manifest model, with its input LUT and output map."""

    spec: ModelSpec
    interpreter: Any
    runtime: Runtime
    choice: DelegateChoice
    threads: int
    _input_index: int = field(init=False)
    _encoder: InputEncoder = field(init=False)
    _outputs: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        detail = self.interpreter.get_input_details()[0]
        check_input_shape(self.spec, tuple(int(v) for v in detail["shape"]))
        dtype = np.dtype(detail["dtype"])
        if dtype != np.dtype(_DTYPES[self.spec.input.dtype]):
            raise ModelError(
                f"model {self.spec.id!r}: input dtype {dtype} differs from the "
                f"manifest's {self.spec.input.dtype}"
            )
        scale, zero_point = detail["quantization"]
        self._encoder = InputEncoder(self.spec.input, dtype, float(scale), int(zero_point))
        self._input_index = detail["index"]
        self._outputs = map_outputs(self.spec.outputs, self.interpreter.get_output_details())

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) the image must be resized to."""
        return self._encoder.size

    def invoke(self, pixels: np.ndarray) -> None:
        """Run the model on an image already resized to :attr:`input_size` (uint8, HxWxC)."""
        self.interpreter.set_tensor(self._input_index, self._encoder.encode(pixels))
        self.interpreter.invoke()

    def output(self, key: str) -> np.ndarray:
        """The named output of the last invoke (a copy, safe to keep)."""
        return self.interpreter.get_tensor(self._outputs[key])

    def describe(self) -> dict[str, Any]:
        """What runs where, for logs and the health report."""
        return {
            "id": self.spec.id,
            "version": self.spec.version,
            "runtime": self.runtime.describe(),
            "delegate": self.choice.kind,
            "reason": self.choice.reason,
            "threads": self.threads,
        }


def load_model(
    spec: ModelSpec,
    model_dir: Path,
    *,
    threads: int = 1,
    delegate: DelegateMode = "auto",
    runtime: Runtime | None = None,
) -> Model:
    """Verify, load and allocate a manifest model; errors are one-line :class:`ModelError`.

    ``.onnx`` files run in ONNX Runtime (an optional extra); everything else in LiteRT, which
    alone can use the Edge TPU (``delegate``).
    """
    if spec.file.endswith(".onnx"):
        from intentcam.inference.onnx import load_onnx_model

        return load_onnx_model(spec, model_dir, threads=threads, delegate=delegate)
    runtime = runtime or import_runtime()
    choice = choose_delegate(delegate, spec, model_dir, runtime)
    delegates = [choice.delegate] if choice.delegate is not None else None
    try:
        interpreter = runtime.interpreter_class(
            model_path=str(choice.model_path), num_threads=threads, experimental_delegates=delegates
        )
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{choice.model_path}: cannot load model: {first_line}") from None
    model = TFLiteModel(spec, interpreter, runtime, choice, threads)
    log.info(
        "loaded %s (%s) with %s on %s, %d thread(s)",
        spec.id,
        choice.model_path.name,
        runtime.describe(),
        choice.kind,
        threads,
    )
    return model

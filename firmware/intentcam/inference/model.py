"""A loaded TFLite model: pixels in through the tensor's own quantisation, outputs out by name.

The input path is one lookup table: every pixel value 0..255 maps to the value the input tensor
needs (float, uint8 or int8), computed once from the manifest's training range and the tensor's
scale and zero point. Per frame that is a single ``np.take`` into a preallocated buffer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from intentcam.errors import ModelError
from intentcam.inference.edgetpu import DelegateChoice, DelegateMode, choose_delegate
from intentcam.inference.runtime import Runtime, import_runtime
from intentcam.models.manifest import InputSpec, ModelSpec, OutputSpec

log = logging.getLogger(__name__)

_DTYPES = {"uint8": np.uint8, "int8": np.int8, "float32": np.float32}


def input_lookup_table(
    spec: InputSpec, dtype: np.dtype, scale: float, zero_point: int
) -> np.ndarray:
    """Map pixel values 0..255 to input-tensor values.

    ``spec.range`` is the float range the network was trained on for pixels 0..255. Quantised
    tensors (scale > 0) store ``round(real / scale + zero_point)`` clipped to the dtype; an integer
    tensor without quantisation parameters takes raw pixels.
    """
    pixels = np.arange(256, dtype=np.float64)
    low, high = spec.range
    real = low + pixels * (high - low) / 255.0
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return real.astype(dtype)
    info = np.iinfo(dtype)
    if scale <= 0:
        quantised = pixels if info.min == 0 else pixels - 128
    else:
        quantised = np.round(real / scale + zero_point)
    return np.clip(quantised, info.min, info.max).astype(dtype)


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


@dataclass
class TFLiteModel:
    """An allocated interpreter for one manifest model, with its input LUT and output map."""

    spec: ModelSpec
    interpreter: Any
    runtime: Runtime
    choice: DelegateChoice
    threads: int
    _input_index: int = field(init=False)
    _lut: np.ndarray | None = field(init=False)
    _buffer: np.ndarray = field(init=False)
    _outputs: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        detail = self.interpreter.get_input_details()[0]
        shape = tuple(int(v) for v in detail["shape"])
        if shape != tuple(self.spec.input.shape):
            raise ModelError(
                f"model {self.spec.id!r}: input shape {shape} differs from the "
                f"manifest's {tuple(self.spec.input.shape)}"
            )
        dtype = np.dtype(detail["dtype"])
        if dtype != np.dtype(_DTYPES[self.spec.input.dtype]):
            raise ModelError(
                f"model {self.spec.id!r}: input dtype {dtype} differs from the "
                f"manifest's {self.spec.input.dtype}"
            )
        scale, zero_point = detail["quantization"]
        lut = input_lookup_table(self.spec.input, dtype, float(scale), int(zero_point))
        identity = dtype == np.uint8 and np.array_equal(lut, np.arange(256, dtype=np.uint8))
        self._lut = None if identity else lut
        self._input_index = detail["index"]
        self._buffer = np.zeros(shape, dtype=dtype)
        self._outputs = map_outputs(self.spec.outputs, self.interpreter.get_output_details())

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) the image must be resized to."""
        _, height, width, _ = self.spec.input.shape
        return width, height

    def invoke(self, pixels: np.ndarray) -> None:
        """Run the model on an image already resized to :attr:`input_size` (uint8, HxWxC)."""
        target = self._buffer[0]
        if self._lut is None:
            np.copyto(target, pixels.reshape(target.shape))
        else:
            np.take(self._lut, pixels.reshape(target.shape), out=target)
        self.interpreter.set_tensor(self._input_index, self._buffer)
        self.interpreter.invoke()

    def output(self, key: str) -> np.ndarray:
        """The named output of the last invoke (a copy, safe to keep)."""
        return self.interpreter.get_tensor(self._outputs[key])

    def describe(self) -> dict[str, str]:
        """What runs where, for logs and the health report."""
        return {
            "id": self.spec.id,
            "version": self.spec.version,
            "runtime": self.runtime.describe(),
            "delegate": self.choice.kind,
            "reason": self.choice.reason,
            "threads": str(self.threads),
        }


def load_model(
    spec: ModelSpec,
    model_dir: Path,
    *,
    threads: int = 1,
    delegate: DelegateMode = "auto",
    runtime: Runtime | None = None,
) -> TFLiteModel:
    """Verify, load and allocate a manifest model; errors are one-line :class:`ModelError`."""
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

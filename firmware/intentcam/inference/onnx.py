"""ONNX Runtime as a second runtime, for ``.onnx`` models where it pays.

The same YOLOX-Nano network runs about twice as fast in ONNX Runtime as its TFLite conversion on
a CPU (the conversion left hundreds of NCHW transposes in the graph). LiteRT stays the runtime for
``.tflite`` files and the only one for the Edge TPU; ``onnxruntime`` is an optional extra
installed by default where it has wheels, imported only when an ``.onnx`` model is loaded; its
absence is a one-line error (and ``detector.model = "auto"`` then picks a TFLite detector).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from intentcam.errors import ModelError
from intentcam.inference.encoder import InputEncoder, check_input_shape
from intentcam.inference.outputs import map_outputs
from intentcam.models.manifest import ModelSpec
from intentcam.models.store import verified_model_path

log = logging.getLogger(__name__)

#: ONNX Runtime logs every initializer it cannot fold at WARNING; only errors matter here.
ORT_LOG_ERRORS_ONLY = 3


def import_onnxruntime(importer: Callable[[str], Any] = importlib.import_module) -> Any:
    """The ``onnxruntime`` module, or a one-line :class:`ModelError` naming the extra.

    ``importer`` is injectable so the missing-extra path is tested without uninstalling.
    """
    try:
        return importer("onnxruntime")
    except ImportError as exc:
        raise ModelError(
            f"ONNX models need onnxruntime ({exc}); install it (pip install onnxruntime) "
            "or choose a .tflite detector"
        ) from None


@dataclass
class OnnxModel:
    """An ONNX Runtime session for one manifest model, with the same calls as a TFLite model."""

    spec: ModelSpec
    session: Any
    threads: int
    version: str
    _encoder: InputEncoder = field(init=False)
    _input_name: str = field(init=False)
    _index: dict[str, int] = field(init=False)
    _results: list[np.ndarray] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        detail = self.session.get_inputs()[0]
        check_input_shape(self.spec, tuple(int(v) for v in detail.shape))
        if detail.type != "tensor(float)" or self.spec.input.dtype != "float32":
            raise ModelError(
                f"model {self.spec.id!r}: input type {detail.type} (manifest "
                f"{self.spec.input.dtype}); only float32 ONNX inputs are supported"
            )
        self._encoder = InputEncoder(self.spec.input, np.dtype(np.float32), 0.0, 0)
        self._input_name = detail.name
        outputs = [
            {"name": o.name, "shape": tuple(int(v) for v in o.shape), "index": i}
            for i, o in enumerate(self.session.get_outputs())
        ]
        self._index = map_outputs(self.spec.outputs, outputs)

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) the image must be resized to."""
        return self._encoder.size

    def invoke(self, pixels: np.ndarray) -> None:
        """Run the model on an image already resized to :attr:`input_size` (uint8, HxWxC)."""
        self._results = self.session.run(None, {self._input_name: self._encoder.encode(pixels)})

    def output(self, key: str) -> np.ndarray:
        """The named output of the last invoke."""
        return self._results[self._index[key]]

    def describe(self) -> dict[str, Any]:
        """What runs where, for logs and the health report."""
        return {
            "id": self.spec.id,
            "version": self.spec.version,
            "runtime": f"onnxruntime {self.version}",
            "delegate": "cpu",
            "reason": "ONNX model: ONNX Runtime on the CPU (no Edge TPU build exists)",
            "threads": self.threads,
        }


def load_onnx_model(
    spec: ModelSpec, model_dir: Path, *, threads: int = 1, delegate: str = "auto"
) -> OnnxModel:
    """Verify and load an ``.onnx`` manifest model; errors are one-line :class:`ModelError`."""
    if delegate == "edgetpu":
        raise ModelError(
            f"detector.delegate = edgetpu, but {spec.id!r} is an ONNX model: the Edge TPU "
            "runs only compiled .tflite models"
        )
    path = verified_model_path(spec, model_dir)
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = ORT_LOG_ERRORS_ONLY
    # The memory pattern plans one buffer per input shape ahead: about 4 MB more resident for
    # YOLOX-Nano and no measurable speed on a CPU (issue 14's budget; hw_bench README).
    options.enable_mem_pattern = False
    try:
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types per failure
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: cannot load model: {first_line}") from None
    try:
        version = metadata.version("onnxruntime")
    except metadata.PackageNotFoundError:
        version = getattr(ort, "__version__", "unknown")
    model = OnnxModel(spec, session, threads, version)
    log.info(
        "loaded %s (%s) with onnxruntime %s, %d thread(s)", spec.id, path.name, version, threads
    )
    return model

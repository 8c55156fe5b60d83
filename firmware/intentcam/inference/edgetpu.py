"""Edge TPU (Coral) delegate selection and its CPU fallback.

With ``delegate = "auto"`` the Edge TPU is used only when both the ``libedgetpu.so.1`` delegate
loads and the manifest's ``_edgetpu`` variant of the model is installed and verified; otherwise the
CPU model runs and the reason is kept for the log and the health report. ``"edgetpu"`` makes the
same checks fatal; ``"cpu"`` never touches the delegate.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from intentcam.errors import ModelError
from intentcam.inference.runtime import Runtime
from intentcam.models.manifest import ModelSpec
from intentcam.models.store import sha256_of, verified_model_path

log = logging.getLogger(__name__)

EDGETPU_LIBRARY = "libedgetpu.so.1"
DelegateMode = Literal["auto", "cpu", "edgetpu"]


@dataclass(frozen=True)
class DelegateChoice:
    """The file to load and the delegate to load it with."""

    kind: Literal["cpu", "edgetpu"]
    model_path: Path
    reason: str
    delegate: Any = None


def choose_delegate(
    mode: DelegateMode, spec: ModelSpec, model_dir: Path, runtime: Runtime
) -> DelegateChoice:
    """Decide between the Edge TPU variant and the CPU model; see the module docstring."""
    if mode == "cpu":
        return DelegateChoice(
            "cpu", verified_model_path(spec, model_dir), "delegate = cpu in the config"
        )
    delegate, problem = load_edgetpu(spec, model_dir, runtime)
    if problem is None:
        assert spec.edgetpu is not None  # and its file was verified by _edgetpu_problem
        return DelegateChoice(
            "edgetpu", model_dir / spec.edgetpu.file, f"{EDGETPU_LIBRARY} loaded", delegate
        )
    if mode == "edgetpu":
        raise ModelError(f"detector.delegate = edgetpu, but {problem}")
    reason = f"Edge TPU not used: {problem}; running on the CPU"
    log.info("model %s: %s", spec.id, reason)
    return DelegateChoice("cpu", verified_model_path(spec, model_dir), reason)


def edgetpu_library_problem(loader: Callable[[str], Any] = ctypes.CDLL) -> str | None:
    """Why ``libedgetpu.so.1`` cannot be loaded, or ``None``; cheap, no TFLite runtime needed.

    Checked before the runtime is imported: on the many devices without a Coral, ``auto`` then
    never loads LiteRT only to find the library missing (about 9 MB of resident memory).
    """
    try:
        loader(EDGETPU_LIBRARY)
    except OSError as exc:
        return f"{EDGETPU_LIBRARY} could not be loaded ({exc})"
    return None


def load_edgetpu(
    spec: ModelSpec, model_dir: Path, runtime: Runtime | Callable[[], Runtime]
) -> tuple[Any, str | None]:
    """The Edge TPU delegate for ``spec``'s verified variant, or ``None`` and why not.

    ``runtime`` may be a function returning it: the library is then probed first, and the
    runtime imported only when the library and the model variant are both there.
    """
    problem = _edgetpu_problem(spec, model_dir)
    if problem is not None:
        return None, problem
    if not isinstance(runtime, Runtime):
        problem = edgetpu_library_problem()
        if problem is not None:
            return None, problem
        runtime = runtime()
    try:
        return runtime.load_delegate(EDGETPU_LIBRARY), None
    except (ValueError, OSError, RuntimeError) as exc:
        return None, f"{EDGETPU_LIBRARY} could not be loaded ({exc})"


def _edgetpu_problem(spec: ModelSpec, model_dir: Path) -> str | None:
    if spec.edgetpu is None:
        return f"the manifest has no Edge TPU variant of {spec.id!r}"
    path = model_dir / spec.edgetpu.file
    if not path.is_file():
        return f"the Edge TPU variant {spec.edgetpu.file} is not installed in {model_dir}"
    if sha256_of(path) != spec.edgetpu.sha256:
        return f"the Edge TPU variant {path} does not match its sha256 in the manifest"
    return None

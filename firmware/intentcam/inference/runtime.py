"""Which TFLite runtime is importable: LiteRT first, tflite_runtime as the fallback.

``ai-edge-litert`` is the maintained runtime (numpy 2, Python 3.10-3.13). ``tflite_runtime`` 2.14
only works with numpy < 2, so it is used only where LiteRT is not installed (old Jetson images).
TensorFlow itself is never imported on the device.
"""

from __future__ import annotations

import ctypes
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import Any

from intentcam.errors import ModelError

#: (distribution name, module providing Interpreter and load_delegate), in order of preference.
RUNTIME_CANDIDATES: tuple[tuple[str, str], ...] = (
    ("ai-edge-litert", "ai_edge_litert.interpreter"),
    ("tflite-runtime", "tflite_runtime.interpreter"),
)

Importer = Callable[[str], ModuleType]


@dataclass(frozen=True)
class Runtime:
    """An importable TFLite runtime and why it was chosen."""

    name: str
    version: str
    module: Any
    #: Why earlier candidates were skipped (empty when the first one loaded).
    skipped: tuple[str, ...] = ()
    #: Opens a delegate's shared library before the runtime does. LiteRT's ``Delegate`` raises
    #: again from its destructor when loading failed, printing a traceback on every start of a
    #: device without a Coral; probing with ctypes first fails cleanly instead.
    probe: Callable[[str], Any] | None = None

    @property
    def interpreter_class(self) -> Any:
        return self.module.Interpreter

    def load_delegate(self, library: str) -> Any:
        """The delegate from ``library``; ``OSError`` when the shared library is not there."""
        if self.probe is not None:
            self.probe(library)
        return self.module.load_delegate(library)

    def describe(self) -> str:
        return f"{self.name} {self.version}"


def _version_of(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def import_runtime(importer: Importer = importlib.import_module) -> Runtime:
    """Import the first working runtime; a one-line :class:`ModelError` if none works.

    ``importer`` is injectable so the fallback order can be tested without uninstalling packages.
    """
    skipped: list[str] = []
    for distribution, module_name in RUNTIME_CANDIDATES:
        try:
            module = importer(module_name)
        except ImportError as exc:
            skipped.append(f"{distribution}: not installed ({exc})")
            continue
        except Exception as exc:  # noqa: BLE001 - a numpy-1 wheel under numpy 2 raises oddly
            skipped.append(f"{distribution}: failed to import ({type(exc).__name__}: {exc})")
            continue
        return Runtime(
            distribution, _version_of(distribution), module, tuple(skipped), probe=ctypes.CDLL
        )
    raise ModelError(
        "no TFLite runtime could be imported: " + "; ".join(skipped) + " (install ai-edge-litert)"
    )

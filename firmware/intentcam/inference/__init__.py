"""TFLite inference: runtime import and fallback, Edge TPU delegate choice, quantised model I/O."""

from intentcam.inference.model import TFLiteModel, load_model
from intentcam.inference.runtime import Runtime, import_runtime

__all__ = ["Runtime", "TFLiteModel", "import_runtime", "load_model"]

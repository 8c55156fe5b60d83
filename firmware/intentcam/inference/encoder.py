"""Pixels to input tensor: one lookup per pixel, in the layout and scale the network was trained on.

Every pixel value 0..255 maps to the value the input tensor needs (float, uint8 or int8), computed
once from the manifest's training range (or per-channel mean and std) and the tensor's scale and
zero point. Per frame that is a ``np.take`` per channel into a preallocated buffer, transposed
on the way for NCHW networks. Shared by every runtime (LiteRT, ONNX Runtime).
"""

from __future__ import annotations

import numpy as np

from intentcam.errors import ModelError
from intentcam.models.manifest import InputSpec, ModelSpec


def input_lookup_table(
    spec: InputSpec, dtype: np.dtype, scale: float, zero_point: int, channel: int | None = None
) -> np.ndarray:
    """Map pixel values 0..255 to input-tensor values (for one ``channel`` with mean/std).

    ``spec.range`` is the float range the network was trained on for pixels 0..255, unless the
    spec gives per-channel ``mean``/``std`` (``(pixel - mean) / std``). Quantised tensors
    (scale > 0) store ``round(real / scale + zero_point)`` clipped to the dtype; an integer
    tensor without quantisation parameters takes raw pixels.
    """
    pixels = np.arange(256, dtype=np.float64)
    if spec.mean is not None and spec.std is not None and channel is not None:
        real = (pixels - spec.mean[channel]) / spec.std[channel]
    else:
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


def check_input_shape(spec: ModelSpec, shape: tuple[int, ...]) -> None:
    """A one-line :class:`ModelError` when the model file's input is not the manifest's."""
    if tuple(shape) != tuple(spec.input.shape):
        raise ModelError(
            f"model {spec.id!r}: input shape {tuple(shape)} differs from the "
            f"manifest's {tuple(spec.input.shape)}"
        )


class InputEncoder:
    """Writes a resized image (HxWxC uint8) into the model's input buffer; see the module docstring."""

    def __init__(self, spec: InputSpec, dtype: np.dtype, scale: float, zero_point: int) -> None:
        self.spec = spec
        self.buffer = np.zeros(tuple(spec.shape), dtype=dtype)
        self.nchw = spec.layout == "nchw"
        channels = spec.shape[1] if self.nchw else spec.shape[-1]
        if spec.mean is not None:
            self._luts: list[np.ndarray] | None = [
                input_lookup_table(spec, dtype, scale, zero_point, channel)
                for channel in range(channels)
            ]
        else:
            lut = input_lookup_table(spec, dtype, scale, zero_point)
            # Pixels 0..255 as they are (uint8, or float 0..255): a plain (casting) copy is
            # several times faster than a lookup.
            identity = np.array_equal(lut, np.arange(256, dtype=np.float64))
            self._luts = None if identity else [lut]

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) the image must be resized to."""
        shape = self.spec.shape
        return (shape[3], shape[2]) if self.nchw else (shape[2], shape[1])

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        """The input tensor for ``pixels`` (already resized to :attr:`size`); reused buffer."""
        target = self.buffer[0]
        # A channel-first view of the image: the copy below does the transpose.
        source = pixels.transpose(2, 0, 1) if self.nchw else pixels.reshape(target.shape)
        if self._luts is None:
            np.copyto(target, source, casting="unsafe")
        elif len(self._luts) == 1:
            np.take(self._luts[0], source, out=target)
        elif self.nchw:
            for channel, lut in enumerate(self._luts):
                np.take(lut, source[channel], out=target[channel])
        else:
            for channel, lut in enumerate(self._luts):
                np.take(lut, source[..., channel], out=target[..., channel])
        return self.buffer

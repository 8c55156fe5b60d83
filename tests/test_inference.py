"""Runtime fallback, Edge TPU delegate choice, input quantisation, output mapping."""

from __future__ import annotations

import shutil
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from intentcam.errors import ModelError
from intentcam.inference.edgetpu import EDGETPU_LIBRARY, choose_delegate
from intentcam.inference.model import input_lookup_table, load_model, map_outputs
from intentcam.inference.runtime import Runtime, import_runtime
from intentcam.models import Manifest
from intentcam.models.manifest import InputSpec, OutputSpec, VariantSpec
from intentcam.models.store import sha256_of

# --- runtime import order -------------------------------------------------------------------


def importer_with(available: dict[str, Any]):
    def importer(name: str) -> Any:
        if name not in available:
            raise ImportError(f"No module named {name!r}")
        value = available[name]
        if isinstance(value, Exception):
            raise value
        return value

    return importer


def test_litert_is_preferred_when_present() -> None:
    litert = types.SimpleNamespace(Interpreter=object, load_delegate=None)
    legacy = types.SimpleNamespace(Interpreter=object, load_delegate=None)
    runtime = import_runtime(
        importer_with({"ai_edge_litert.interpreter": litert, "tflite_runtime.interpreter": legacy})
    )
    assert runtime.name == "ai-edge-litert" and runtime.module is litert
    assert runtime.skipped == ()


def test_falls_back_to_tflite_runtime_and_says_why() -> None:
    legacy = types.SimpleNamespace(Interpreter=object, load_delegate=None)
    runtime = import_runtime(importer_with({"tflite_runtime.interpreter": legacy}))
    assert runtime.name == "tflite-runtime" and runtime.module is legacy
    assert "ai-edge-litert: not installed" in runtime.skipped[0]


def test_numpy_abi_failure_also_falls_back() -> None:
    # tflite-runtime 2.14 under numpy 2 fails with an AttributeError-style error, not ImportError.
    legacy = types.SimpleNamespace(Interpreter=object, load_delegate=None)
    runtime = import_runtime(
        importer_with(
            {
                "ai_edge_litert.interpreter": AttributeError("_ARRAY_API not found"),
                "tflite_runtime.interpreter": legacy,
            }
        )
    )
    assert runtime.name == "tflite-runtime"
    assert "failed to import" in runtime.skipped[0]


def test_no_runtime_is_a_one_line_error() -> None:
    with pytest.raises(ModelError, match="no TFLite runtime") as caught:
        import_runtime(importer_with({}))
    assert "ai-edge-litert" in str(caught.value) and "tflite-runtime" in str(caught.value)


def test_the_real_runtime_here_is_litert() -> None:
    assert import_runtime().name == "ai-edge-litert"


# --- Edge TPU delegate choice ---------------------------------------------------------------


def runtime_with_delegate(result: Any) -> Runtime:
    """A runtime whose delegate loader returns or raises ``result``: no Coral exists here."""

    def load_delegate(library: str) -> Any:
        assert library == EDGETPU_LIBRARY
        if isinstance(result, Exception):
            raise result
        return result

    module = types.SimpleNamespace(Interpreter=object, load_delegate=load_delegate)
    return Runtime("ai-edge-litert", "test", module)


@pytest.fixture()
def ssd_with_variant(tmp_path: Path, manifest: Manifest, model_dir: Path):
    """The SSD spec with an Edge TPU variant entry, and a model dir holding both files."""
    spec = manifest.get("ssd_mobilenet_v1_coco_quant")
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(model_dir / spec.file, folder / spec.file)
    variant_file = folder / "ssd_edgetpu.tflite"
    variant_file.write_bytes(b"compiled for the edge tpu")
    variant = VariantSpec(file=variant_file.name, sha256=sha256_of(variant_file))
    return spec.model_copy(update={"edgetpu": variant}), folder


def test_cpu_mode_never_touches_the_delegate(ssd_with_variant) -> None:
    spec, folder = ssd_with_variant
    choice = choose_delegate("cpu", spec, folder, runtime_with_delegate(AssertionError("no")))
    assert choice.kind == "cpu" and choice.model_path.name == spec.file


def test_auto_uses_edgetpu_when_delegate_and_variant_exist(ssd_with_variant) -> None:
    spec, folder = ssd_with_variant
    sentinel = object()
    choice = choose_delegate("auto", spec, folder, runtime_with_delegate(sentinel))
    assert choice.kind == "edgetpu"
    assert choice.delegate is sentinel
    assert choice.model_path.name == "ssd_edgetpu.tflite"


def test_auto_falls_back_to_cpu_when_the_library_is_missing(ssd_with_variant) -> None:
    spec, folder = ssd_with_variant
    error = ValueError("Failed to load delegate from libedgetpu.so.1")
    choice = choose_delegate("auto", spec, folder, runtime_with_delegate(error))
    assert choice.kind == "cpu" and choice.model_path.name == spec.file
    assert "libedgetpu.so.1 could not be loaded" in choice.reason


def test_auto_falls_back_when_the_variant_is_missing_or_tampered(ssd_with_variant) -> None:
    spec, folder = ssd_with_variant
    (folder / "ssd_edgetpu.tflite").write_bytes(b"tampered")
    choice = choose_delegate("auto", spec, folder, runtime_with_delegate(object()))
    assert choice.kind == "cpu" and "does not match" in choice.reason
    (folder / "ssd_edgetpu.tflite").unlink()
    choice = choose_delegate("auto", spec, folder, runtime_with_delegate(object()))
    assert choice.kind == "cpu" and "not installed" in choice.reason


def test_auto_without_variant_in_manifest_says_so(manifest: Manifest, model_dir: Path) -> None:
    spec = manifest.get("ssd_mobilenet_v1_coco_quant")
    choice = choose_delegate("auto", spec, model_dir, runtime_with_delegate(object()))
    assert choice.kind == "cpu" and "no Edge TPU variant" in choice.reason


def test_edgetpu_mode_makes_fallback_reasons_fatal(ssd_with_variant) -> None:
    spec, folder = ssd_with_variant
    with pytest.raises(ModelError, match="delegate = edgetpu, but libedgetpu.so.1"):
        choose_delegate("edgetpu", spec, folder, runtime_with_delegate(OSError("not found")))


def test_real_load_reports_runtime_delegate_and_reason(manifest: Manifest, model_dir: Path) -> None:
    model = load_model(manifest.get("ssd_mobilenet_v1_coco_quant"), model_dir, threads=2)
    described = model.describe()
    assert described["runtime"].startswith("ai-edge-litert")
    assert described["delegate"] == "cpu" and described["threads"] == 2
    assert "Edge TPU not used" in described["reason"]


def test_a_file_that_is_not_a_model_is_a_one_line_error(tmp_path: Path, manifest: Manifest) -> None:
    spec = manifest.get("fer_mini_xception")
    junk = tmp_path / spec.file
    junk.write_bytes(b"\x00" * 1000)
    spec = spec.model_copy(update={"sha256": sha256_of(junk)})
    with pytest.raises(ModelError, match="cannot load model") as caught:
        load_model(spec, tmp_path)
    assert "\n" not in str(caught.value)


# --- quantisation -------------------------------------------------------------------------


def test_uint8_input_quantised_from_the_tensors_own_parameters() -> None:
    # The SSD: trained on [-1, 1], uint8 tensor with scale 1/128 and zero point 128.
    lut = input_lookup_table(
        InputSpec(shape=(1, 2, 2, 3), dtype="uint8", range=(-1.0, 1.0)),
        np.dtype(np.uint8),
        1 / 128,
        128,
    )
    assert lut.dtype == np.uint8
    assert lut[0] == 0 and lut[255] == 255
    assert np.abs(lut.astype(int) - np.arange(256)).max() <= 1
    real_back = (lut.astype(float) - 128) / 128
    assert np.abs(real_back - np.linspace(-1, 1, 256)).max() <= 1 / 128 + 1e-9


def test_int8_input_uses_its_zero_point() -> None:
    lut = input_lookup_table(
        InputSpec(shape=(1, 2, 2, 3), dtype="int8", range=(-1.0, 1.0)),
        np.dtype(np.int8),
        1 / 128,
        0,
    )
    assert lut.dtype == np.int8
    assert lut[0] == -128 and lut[255] == 127 and abs(int(lut[128])) <= 1


def test_int8_input_with_other_scale_and_zero_point() -> None:
    # A model trained on [0, 1] with scale 1/255 and zero point -128.
    lut = input_lookup_table(
        InputSpec(shape=(1, 2, 2, 3), dtype="int8", range=(0.0, 1.0)),
        np.dtype(np.int8),
        1 / 255,
        -128,
    )
    np.testing.assert_array_equal(lut.astype(int), np.arange(256) - 128)


def test_float_input_maps_to_the_training_range() -> None:
    lut = input_lookup_table(
        InputSpec(shape=(1, 2, 2, 3), dtype="float32", range=(-1.0, 1.0)),
        np.dtype(np.float32),
        0.0,
        0,
    )
    assert lut.dtype == np.float32
    assert lut[0] == pytest.approx(-1.0) and lut[255] == pytest.approx(1.0)


def test_unquantised_uint8_takes_raw_pixels() -> None:
    lut = input_lookup_table(
        InputSpec(shape=(1, 2, 2, 3), dtype="uint8", range=(0.0, 255.0)), np.dtype(np.uint8), 0.0, 0
    )
    np.testing.assert_array_equal(lut, np.arange(256, dtype=np.uint8))


# --- output mapping -----------------------------------------------------------------------

SSD_DETAILS = [
    {"name": "TFLite_Detection_PostProcess", "index": 7, "shape": np.array([1, 10, 4])},
    {"name": "TFLite_Detection_PostProcess:1", "index": 8, "shape": np.array([1, 10])},
    {"name": "TFLite_Detection_PostProcess:2", "index": 9, "shape": np.array([1, 10])},
    {"name": "TFLite_Detection_PostProcess:3", "index": 10, "shape": np.array([1])},
]


def test_outputs_map_by_name_whatever_their_order(manifest: Manifest) -> None:
    specs = manifest.get("ssd_mobilenet_v1_coco_quant").outputs
    expected = {"boxes": 7, "classes": 8, "scores": 9, "count": 10}
    assert map_outputs(specs, SSD_DETAILS) == expected
    assert map_outputs(specs, list(reversed(SSD_DETAILS))) == expected


def test_outputs_map_by_unique_shape_when_unnamed() -> None:
    specs = {"keypoints": OutputSpec(shape=(1, 1, 17, 3)), "extra": OutputSpec(shape=(1, 4))}
    details = [
        {"name": "a", "index": 3, "shape": np.array([1, 4])},
        {"name": "b", "index": 5, "shape": np.array([1, 1, 17, 3])},
    ]
    assert map_outputs(specs, details) == {"keypoints": 5, "extra": 3}


def test_ambiguous_unnamed_outputs_are_refused() -> None:
    specs = {"classes": OutputSpec(shape=(1, 10)), "scores": OutputSpec(shape=(1, 10))}
    renamed = [dict(d, name=f"StatefulPartitionedCall:{i}") for i, d in enumerate(SSD_DETAILS)]
    with pytest.raises(ModelError, match="cannot identify"):
        map_outputs(specs, renamed)


def test_named_output_with_wrong_shape_is_refused() -> None:
    specs = {"boxes": OutputSpec(name="TFLite_Detection_PostProcess", shape=(1, 20, 4))}
    with pytest.raises(ModelError, match="has shape"):
        map_outputs(specs, SSD_DETAILS)

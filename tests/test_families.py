"""Detector families behind the one interface: decoding on numbers, then on a real image.

The reference boxes on the kite beach were drawn by hand around the two walkers in the
foreground (pixels of the 1352x900 image), not copied from any detector's output.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from intentcam.config import Settings
from intentcam.detect import FAMILIES, PersonDetector, build_detector
from intentcam.detect.letterbox import Letterbox
from intentcam.detect.nanodet import REG_MAX, cell_centres, distances
from intentcam.detect.yolox import decode, grid_cells
from intentcam.errors import ModelError
from intentcam.inference.onnx import import_onnxruntime
from intentcam.track.bytetrack import iou_matrix
from tests.data import DATA

#: Hand-drawn boxes (x1, y1, x2, y2 px): the walker in the blue jacket, the one in the hood.
WALKERS = np.array([[112, 608, 166, 762], [210, 686, 275, 864]], dtype=np.float32)
GRID_DETECTORS = ["yolox_nano", "yolox_nano_fp16", "nanodet_m_416"]


def test_yolox_grid_and_decode_on_numbers() -> None:
    cells, strides = grid_cells(416, 416)
    assert len(cells) == 52 * 52 + 26 * 26 + 13 * 13 == 3549
    assert strides[0] == 8 and strides[52 * 52] == 16 and strides[-1] == 32
    raw = np.zeros((3549, 85), dtype=np.float32)
    row = 52 * 3 + 10  # stride-8 cell x=10, y=3
    raw[row, :5] = [0.5, 0.25, np.log(4.0), np.log(8.0), 0.9]
    raw[row, 5] = 0.8  # person
    raw[row + 1, 4:6] = [0.9, 0.1]  # objectness but not a person
    boxes, scores = decode(raw, cells, strides, class_id=0, threshold=0.5)
    # centre ((10.5, 3.25) * 8) = (84, 26); size (4, 8) * 8 = (32, 64)
    np.testing.assert_allclose(boxes, [[68, -6, 100, 58]], atol=1e-4)
    np.testing.assert_allclose(scores, [0.72], atol=1e-6)


def test_nanodet_gfl_distances_and_centres_on_numbers() -> None:
    logits = np.full((1, 4 * (REG_MAX + 1)), -50.0, dtype=np.float32)
    for side, bin_index in enumerate([2, 0, 7, 3]):  # one sure bin per side
        logits[0, side * (REG_MAX + 1) + bin_index] = 50.0
    np.testing.assert_allclose(distances(logits, stride=16), [[32, 0, 112, 48]], atol=1e-3)
    centres = cell_centres(416, 416, 32)
    np.testing.assert_allclose(centres[:2], [[15.5, 15.5], [47.5, 15.5]])


def test_letterbox_places_and_maps_back() -> None:
    image = np.full((100, 200, 3), 255, dtype=np.uint8)
    top_left = Letterbox(416, 416, 114, centered=False)
    canvas, placement = top_left.fit(image)
    assert placement.scale == pytest.approx(2.08) and (placement.left, placement.top) == (0, 0)
    assert canvas[0, 0, 0] == 255 and canvas[-1, -1, 0] == 114  # image top-left, grey below
    centred = Letterbox(416, 416, 0, centered=True)
    canvas, placement = centred.fit(image)
    assert placement.top == (416 - 208) // 2 and canvas[0, 0, 0] == 0
    whole = np.array([[0, placement.top, 416, placement.top + 208]], dtype=np.float32)
    np.testing.assert_allclose(placement.to_normalised(whole), [[0, 0, 1, 1]], atol=1e-6)


@pytest.fixture(scope="module")
def kite() -> np.ndarray:
    image = cv2.imread(str(DATA / "kite_and_cold.jpg"))
    assert image is not None
    return image


@pytest.mark.parametrize("model_id", GRID_DETECTORS)
def test_grid_families_find_the_hand_checked_walkers(
    model_id: str, make_settings: Callable[..., Settings], kite: np.ndarray
) -> None:
    detector = build_detector(make_settings(detector={"model": model_id, "tiling": "1x1"}))
    assert isinstance(detector, PersonDetector)
    assert detector.describe()["family"] in FAMILIES
    found = detector.detect(kite, min_score=0.5)
    height, width = kite.shape[:2]
    overlap = iou_matrix(WALKERS, found.to_pixels(width, height))
    assert (overlap.max(axis=1) >= 0.8).all(), overlap.max(axis=1)
    assert detector.last.invokes == 1 and detector.last.layout == "1x1"


def test_ssd_v2_family_and_box_limit(make_settings: Callable[..., Settings], kite) -> None:
    detector = build_detector(make_settings(detector={"model": "ssd_mobilenet_v2_coco_quant"}))
    described = detector.describe()
    assert described["family"] == "ssd_postprocess" and described["delegate"] == "cpu"
    assert "Edge TPU not used" in described["reason"]  # the variant is there, the Coral is not
    found = detector.detect(kite, min_score=0.3)
    height, width = kite.shape[:2]
    assert iou_matrix(WALKERS, found.to_pixels(width, height)).max(axis=1).min() >= 0.7


def test_onnx_models_run_in_onnx_runtime_and_refuse_the_edge_tpu(
    make_settings: Callable[..., Settings],
) -> None:
    detector = build_detector(make_settings(detector={"model": "yolox_nano", "threads": 1}))
    described = detector.describe()
    assert described["runtime"].startswith("onnxruntime ") and described["threads"] == 1
    with pytest.raises(ModelError, match="Edge TPU runs only compiled .tflite"):
        build_detector(make_settings(detector={"model": "yolox_nano", "delegate": "edgetpu"}))


def test_missing_onnxruntime_is_a_one_line_error() -> None:
    def no_module(name: str) -> None:
        raise ImportError(f"No module named {name!r}")

    with pytest.raises(ModelError, match=r"pip install onnxruntime"):
        import_onnxruntime(no_module)


def test_a_non_detector_model_is_refused_as_detector(make_settings, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="is a face_detector, not a person detector"):
        build_detector(make_settings(detector={"model": "blazeface_full_range"}))


def test_yolox_tiles_without_the_whole_frame_pass_and_finds_more_people(
    make_settings: Callable[..., Settings],
) -> None:
    capture = cv2.VideoCapture(str(DATA / "concourse_overhead.avi"))
    frames = [capture.read()[1] for _ in range(3)]
    capture.release()
    found = {}
    for layout in ("1x1", "2x1"):
        detector = build_detector(make_settings(detector={"model": "yolox_nano", "tiling": layout}))
        found[layout] = sum(len(detector.detect(frame)) for frame in frames)
    assert detector.last.invokes == 2  # two tiles: the family needs no whole-frame pass
    assert found["2x1"] >= 1.3 * found["1x1"], found

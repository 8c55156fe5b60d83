"""Build a native NHWC TFLite YOLOX-Nano (float16 and int8) from the ONNX model, reproducibly.

A build-time tool, never a device dependency: it needs ``onnx2tf`` and TensorFlow, which the
daemon never imports. Run it in a virtualenv of its own:

    python3 -m venv /tmp/convert && /tmp/convert/bin/pip install onnx2tf tensorflow-cpu tf-keras \\
        onnx onnx-graphsurgeon sng4onnx psutil ai-edge-litert onnxruntime opencv-python-headless
    /tmp/convert/bin/python models_tflite/convert_yolox.py --onnx ../shared/models/yolox_nano.onnx \\
        --out build/yolox [--frames 200]

Steps:

1. **Split the head.** YOLOX concatenates box offsets (pixels-ish, tens) and scores (0..1) into
   one tensor; quantised together they share one scale, and the boxes are clipped (the int8 files
   published next to the ONNX model are broken exactly so). The graph is rewritten to output
   ``boxes`` ``[1, 3549, 4]`` and ``scores`` ``[1, 3549, 81]`` (objectness, 80 classes) as two
   tensors, so each keeps its own scale.
2. **Calibration frames**: ``--frames`` frames spread over the shared clips (concourse, Mall,
   both CAVIAR views), letterboxed top-left on grey 114 like the daemon does, BGR 0..255.
3. **onnx2tf** converts to NHWC (no transposes left in the graph) and writes float32, float16 and
   int8 (dynamic-range and full-integer) models.
4. **Check**: every output model runs on held-back frames beside ONNX Runtime on the split ONNX;
   the report gives score and box agreement, ms per invoke and the sha256 of each file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CLIPS = (
    DATA / "concourse_overhead.avi",
    DATA / "counting" / "mall_dataset" / "mall_frames_0001-0400.mp4",
    DATA / "mot" / "caviar_oneleaveshop1_cor" / "video.mpg",
    DATA / "mot" / "caviar_enterexitcrossingpaths2_front" / "video.avi",
)
SIZE = 416
INPUT = "images"
SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"


def split_head(source: Path, target: Path) -> None:
    """Rewrite the graph so boxes and scores leave it as two tensors (see the docstring)."""
    import onnx
    import onnx_graphsurgeon as gs

    original = onnx.load(str(source))
    graph = gs.import_onnx(original)
    levels = [
        node
        for node in graph.nodes
        if node.op == "Concat" and len(node.inputs) == 3 and node.attrs.get("axis") == 1
    ]
    if len(levels) != 3:
        raise SystemExit(f"{source}: expected 3 per-level head concats, found {len(levels)}")
    boxes, scores = [], []
    for index, node in enumerate(levels):
        reg, obj, cls = node.inputs
        score = gs.Variable(f"score_{index}", dtype=np.float32)
        graph.nodes.append(gs.Node("Concat", inputs=[obj, cls], outputs=[score], attrs={"axis": 1}))
        for name, tensor, channels, out in (("box", reg, 4, boxes), ("score", score, 81, scores)):
            flat = gs.Variable(f"{name}_flat_{index}", dtype=np.float32)
            shape = gs.Constant(
                f"{name}_shape_{index}", np.array([1, channels, -1], dtype=np.int64)
            )
            graph.nodes.append(gs.Node("Reshape", inputs=[tensor, shape], outputs=[flat]))
            out.append(flat)
    outputs = []
    for name, parts in (("boxes", boxes), ("scores", scores)):
        joined = gs.Variable(f"{name}_cf", dtype=np.float32)
        graph.nodes.append(gs.Node("Concat", inputs=parts, outputs=[joined], attrs={"axis": 2}))
        final = gs.Variable(name, dtype=np.float32)
        graph.nodes.append(
            gs.Node("Transpose", inputs=[joined], outputs=[final], attrs={"perm": [0, 2, 1]})
        )
        outputs.append(final)
    graph.outputs = outputs
    graph.cleanup().toposort()
    model = gs.export_onnx(graph)
    model = onnx.shape_inference.infer_shapes(model)
    model.ir_version = original.ir_version  # runtimes lag behind the newest IR version
    onnx.save(model, str(target))


def letterbox(image: np.ndarray) -> np.ndarray:
    """Top-left on grey 114, as YOLOX was trained and as the daemon feeds it."""
    scale = min(SIZE / image.shape[1], SIZE / image.shape[0])
    width, height = round(image.shape[1] * scale), round(image.shape[0] * scale)
    canvas = np.full((SIZE, SIZE, 3), 114, dtype=np.uint8)
    canvas[:height, :width] = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return canvas


def frames(count: int) -> np.ndarray:
    """``count`` letterboxed frames, spread evenly over every shared clip (NHWC, float32)."""
    per_clip = max(1, count // len(CLIPS))
    collected = []
    for clip in CLIPS:
        capture = cv2.VideoCapture(str(clip))
        images = []
        while True:
            ok, image = capture.read()
            if not ok:
                break
            images.append(image)
        capture.release()
        if not images:
            raise SystemExit(f"{clip}: no frames")
        for index in np.linspace(0, len(images) - 1, per_clip).astype(int):
            collected.append(letterbox(images[index]))
    return np.stack(collected).astype(np.float32)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check(tflite: Path, reference: Path, held_back: np.ndarray) -> dict[str, object]:
    """Scores and boxes of a converted model beside ONNX Runtime's, and its speed."""
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    session = ort.InferenceSession(str(reference), providers=["CPUExecutionProvider"])
    interpreter = Interpreter(model_path=str(tflite), num_threads=2)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    outputs = {tuple(d["shape"][-1:]): d for d in interpreter.get_output_details()}
    score_error, box_error, times = [], [], []
    for frame in held_back:
        expected_boxes, expected_scores = session.run(None, {INPUT: frame.transpose(2, 0, 1)[None]})
        data = frame[None]
        if detail["dtype"] != np.float32:
            scale, zero = detail["quantization"]
            data = np.clip(np.round(data / scale + zero), -128, 127).astype(detail["dtype"])
        interpreter.set_tensor(detail["index"], data)
        started = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - started) * 1e3)
        got = {}
        for key, out in outputs.items():
            value = interpreter.get_tensor(out["index"]).astype(np.float32)
            scale, zero = out["quantization"]
            got[key] = (value - zero) * scale if scale else value
        got_boxes, got_scores = got[(4,)], got[(81,)]
        person = expected_scores[0, :, 0] * expected_scores[0, :, 1]
        confident = person >= 0.3
        score_error.append(float(np.abs(got_scores[0, :, 0] * got_scores[0, :, 1] - person).max()))
        if confident.any():
            box_error.append(
                float(np.abs(got_boxes[0][confident] - expected_boxes[0][confident]).max())
            )
    return {
        "file": tflite.name,
        "sha256": sha256(tflite),
        "bytes": tflite.stat().st_size,
        "person_score_max_abs_error": round(float(np.mean(score_error)), 4),
        "box_max_abs_error_cells": round(float(np.mean(box_error)), 3) if box_error else None,
        "invoke_ms_p50": round(float(np.median(times[1:])), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", type=Path, required=True, help="yolox_nano.onnx")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--frames", type=int, default=200, help="calibration frames (default 200)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    split = args.out / "yolox_nano_split.onnx"
    split_head(args.onnx, split)
    data = frames(args.frames + 20)
    calibration, held_back = data[:-20], data[-20:]
    np.save(args.out / "calibration.npy", calibration)
    # onnx2tf checks its conversion on 20 sample images, which it would download from GitHub
    # unless they are already in its working folder: give it ours (128x128, 0..1, RGB order).
    sample = np.stack([cv2.resize(f, (128, 128))[..., ::-1] / 255.0 for f in held_back])
    np.save(args.out / SAMPLE_FILE, sample.astype(np.float32))
    tools = str(Path(sys.executable).parent)  # onnx2tf runs onnxsim from PATH
    subprocess.run(
        [
            str(Path(sys.executable).with_name("onnx2tf")),
            "-i",
            str(split),
            "-o",
            str(args.out / "tflite"),
            "-oiqt",
            "-qt",
            "per-channel",
            "-cind",
            INPUT,
            str(args.out / "calibration.npy"),
            "[[[[0,0,0]]]]",
            "[[[[1,1,1]]]]",
        ],
        check=True,
        cwd=args.out,
        env={**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    report = [
        check(path, split, held_back) for path in sorted((args.out / "tflite").glob("*.tflite"))
    ]
    print(json.dumps(report, indent=2))
    (args.out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``intentcam faces IMAGE``: the faces found in one image, their quality verdict, expressions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from intentcam.cli.common import add_config_option, settings_from

NAME = "faces"
MODELS = {"full": "blazeface_full_range", "short": "blazeface_short_range"}


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        NAME,
        help="find the faces in one image (installer diagnostics)",
        description="Run BlazeFace on a whole image and print each face's box, score and quality "
        "verdict (size, score, frontal, sharp). With --expression also the seven "
        "expression probabilities. Nothing is written; the image is not kept.",
    )
    parser.add_argument("image", type=Path, metavar="IMAGE")
    add_config_option(parser)
    parser.add_argument(
        "--model",
        choices=sorted(MODELS),
        help="full range (default, up to ~5 m) "
        "or short range (within ~2 m); default: faces.model from the config",
    )
    parser.add_argument(
        "--expression",
        action="store_true",
        help="also run the expression model on faces that pass the quality gate",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: `intentcam --help` and the other commands do not pay for them.
    import cv2

    from intentcam.capture.files import read_image
    from intentcam.faces.blazeface import KEYPOINTS, BlazeFace
    from intentcam.faces.expression import CLASSES, ExpressionModel
    from intentcam.faces.quality import QualitySettings, judge
    from intentcam.inference.model import load_model
    from intentcam.models import load_manifest
    from intentcam.sentiment.build import EXPRESSION_MODEL

    image = read_image(args.image)
    assert image is not None
    settings = settings_from(args)
    manifest = load_manifest(settings.paths.manifest)
    model_id = MODELS[args.model] if args.model else settings.faces.model
    detector = BlazeFace(load_model(manifest.get(model_id), settings.paths.models, threads=2))
    expression = (
        ExpressionModel(load_model(manifest.get(EXPRESSION_MODEL), settings.paths.models))
        if args.expression
        else None
    )
    quality = QualitySettings(
        min_size_px=settings.faces.min_face_px,
        min_score=settings.faces.min_face_score,
        min_sharpness=settings.faces.min_sharpness,
    )
    faces = detector.detect(image)
    height, width = image.shape[:2]
    report: list[dict[str, Any]] = []
    for box, score, points in zip(faces.boxes, faces.scores, faces.keypoints):
        x1, y1 = int(max(box[0], 0)), int(max(box[1], 0))
        x2, y2 = int(min(box[2], width)), int(min(box[3], height))
        gray = (
            cv2.cvtColor(image[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY) if x2 > x1 and y2 > y1 else None
        )
        verdict = judge(box, float(score), points, gray, quality) if gray is not None else None
        entry: dict[str, Any] = {
            "box_px": [int(round(v)) for v in box],
            "score": round(float(score), 3),
            "quality": verdict.reason if verdict else "outside the image",
            "passes": bool(verdict and verdict.ok),
            "keypoints": {
                name: [int(round(x)), int(round(y))] for name, (x, y) in zip(KEYPOINTS, points)
            },
        }
        if expression is not None and verdict is not None and verdict.ok and gray is not None:
            probabilities = expression.probabilities(gray)
            entry["expression"] = {
                name: round(float(p), 3) for name, p in zip(CLASSES, probabilities)
            }
        report.append(entry)
    if args.json:
        print(json.dumps({"image": str(args.image), "model": model_id, "faces": report}))
        return 0
    print(f"{len(report)} face(s) in {args.image} ({width}x{height}, {model_id})")
    for number, face in enumerate(report, start=1):
        x1, y1, x2, y2 = face["box_px"]
        line = f"  #{number}  score {face['score']:.2f}  box ({x1}, {y1}) - ({x2}, {y2})  {face['quality']}"
        if "expression" in face:
            top = max(face["expression"], key=face["expression"].get)
            line += f"  expression: {top} {face['expression'][top]:.2f}"
        print(line)
    return 0

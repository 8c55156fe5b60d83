"""Do the shelf interactions survive a different camera? The labelled clips, transformed.

Usage (from the repository root, after `make setup`):

    .venv/bin/python hw_bench/shelf_invariance.py [--clips ../shared/data/shelf] [--json OUT]
        [--variants NAME ...] [--poses FILE.pkl]

Someone else's store cameras differ from ours in ways that should not change what a hand did:
the picture mirrored (the shelf on the other side), a smaller or larger stream, half the frame
rate, a 16:9 picture with the scene in the middle, harder compression, a camera mounted a
little askew, a steeper camera (crudely: the picture squashed upright). Each variant
re-encodes every labelled clip (polygons and label frames moved with it), runs it through the
daemon's detector, tracker and MoveNet as ``eval-shelf`` does, and scores the *shipped*
``[shelf]`` thresholds: a reach found on the original and lost on a variant points at something
that depends on the camera, not on the shopper. Per clip reach matched/detected/labelled, the
totals of every kind; then thresholds chosen on the tune clips of every variant at once
(``eval-shelf``'s grid) against the shipped ones, on the test clips of each variant and pooled.
Results in evaluation/shelf/README.md (from the "Eighth session"; the latest, with all ten
variants, in the "Seventeenth session").
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from intentcam.analytics.shelf import ShelfSettings
from intentcam.benchmark import write_report
from intentcam.evaluation.shelf import ClipPoses, choose, matched_detected_labelled, score
from intentcam.evaluation.shelf_labels import LabelledClip, frame_rate
from shelf_clips import Pairs, add_clip_arguments, labelled_clips


@dataclass(frozen=True)
class Variant:
    """A change of camera: of each frame, of a normalised (x, y) point, and of the frame rate
    (``step``: keep every step-th frame)."""

    name: str
    frame: Callable[[np.ndarray], np.ndarray] = lambda image: image
    point: Callable[[float, float, tuple[int, int]], tuple[float, float]] = lambda x, y, _: (x, y)
    step: int = 1


def _jpeg(image: np.ndarray, quality: int = 70) -> np.ndarray:
    _, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
    assert decoded is not None, "OpenCV could not decode the JPEG it had just encoded"
    return decoded


def _pad_to_16_9(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    pad = max(round(height * 16 / 9) - width, 0)
    return cv2.copyMakeBorder(image, 0, 0, pad // 2, pad - pad // 2, cv2.BORDER_CONSTANT)


def _padded_point(x: float, y: float, size: tuple[int, int]) -> tuple[float, float]:
    width, height = size
    padded = max(round(height * 16 / 9), width)
    return ((x * width + (padded - width) // 2) / padded, y)


def _full_hd(image: np.ndarray) -> np.ndarray:
    """The picture as a 1920x1080 store camera would frame it: scaled to 1080 rows, pillarboxed."""
    scale = 1080 / image.shape[0]
    return _pad_to_16_9(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR))


#: A camera mounted askew: the picture turned this many degrees (counter-clockwise) about its centre.
ROLL_DEGREES = 10.0


def _roll(size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """The affine matrix that turns a ``size`` picture by :data:`ROLL_DEGREES` about its centre
    onto a canvas just large enough to hold all of it, and that canvas's size: nothing of the
    scene (or of a polygon) is cut off, the people keep their size in pixels."""
    width, height = size
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), ROLL_DEGREES, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    canvas = (int(round(width * cos + height * sin)), int(round(width * sin + height * cos)))
    matrix[:, 2] += np.array([(canvas[0] - width) / 2, (canvas[1] - height) / 2])
    return matrix, canvas


def _rolled(image: np.ndarray) -> np.ndarray:
    """The picture of a camera rolled by :data:`ROLL_DEGREES`, the corners of the canvas black."""
    matrix, canvas = _roll((image.shape[1], image.shape[0]))
    return cv2.warpAffine(image, matrix, canvas, flags=cv2.INTER_LINEAR)


def _rolled_point(x: float, y: float, size: tuple[int, int]) -> tuple[float, float]:
    matrix, (width, height) = _roll(size)
    moved_x, moved_y = matrix @ np.array([x * size[0], y * size[1], 1.0])
    return (float(moved_x / width), float(moved_y / height))


#: A steeper camera, crudely: everything upright (people, shelf faces, the depth of a table top)
#: shortened in the picture by this factor, widths kept. Torsos shrink, sideways reaches do not.
SQUASH = 0.75


def _squashed(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, None, fx=1.0, fy=SQUASH, interpolation=cv2.INTER_AREA)


VARIANTS = (
    Variant("original"),
    Variant("mirrored", frame=lambda image: cv2.flip(image, 1), point=lambda x, y, _: (1.0 - x, y)),
    Variant(
        "half size",
        frame=lambda image: cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA),
    ),
    Variant(
        "double size",
        frame=lambda image: cv2.resize(image, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_LINEAR),
    ),
    Variant("half frame rate", step=2),
    Variant("16:9, pillarboxed", frame=_pad_to_16_9, point=_padded_point),
    Variant("JPEG q70", frame=_jpeg),
    Variant("1080p 16:9", frame=_full_hd, point=_padded_point),
    Variant(f"rolled {ROLL_DEGREES:g} deg", frame=_rolled, point=_rolled_point),
    Variant(f"squashed {SQUASH:g} upright", frame=_squashed),
)


def transformed(clip: LabelledClip, variant: Variant, folder: Path) -> LabelledClip:
    """``clip`` re-encoded through ``variant`` into ``folder`` (losslessly: FFV1), its polygons
    and labels moved."""
    capture = cv2.VideoCapture(str(clip.path))
    fps = frame_rate(capture, clip.fps)
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    out_path = folder / f"{clip.name}.avi"
    writer = None
    index = 0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        if index % variant.step == 0:
            image = variant.frame(image)
            if writer is None:
                writer = cv2.VideoWriter(str(out_path), cv2.VideoWriter.fourcc(*"FFV1"),
                                         fps / variant.step, (image.shape[1], image.shape[0]))  # fmt: skip
            writer.write(image)
        index += 1
    capture.release()
    if writer is None:
        raise SystemExit(f"shelf_invariance: {clip.path}: no frame could be read")
    writer.release()
    shelves = {
        shelf: [list(variant.point(x, y, size)) for x, y in points]
        for shelf, points in clip.shelves.items()
    }
    events = {
        shelf: [replace(e, start=e.start // variant.step, end=e.end // variant.step) for e in found]
        for shelf, found in clip.events.items()
    }
    # The variant's container states its true frame rate: no labelled ``fps`` to carry over.
    frames = -(-index // variant.step)
    return replace(clip, path=out_path, shelves=shelves, events=events, frames=frames, fps=None)


def variant_poses(clips: list[LabelledClip], variant: Variant,
                  poses_of: Callable[[LabelledClip], ClipPoses], folder: Path) -> Pairs:  # fmt: skip
    """Every clip of one variant with the poses the daemon would take of it."""
    pairs = []
    for clip in tqdm(clips, desc=variant.name, unit="clip", leave=False):
        moved = transformed(clip, variant, folder)
        pairs.append((moved, poses_of(moved)))
    return pairs


def held_out_reach(by_variant: dict[str, Pairs], settings: ShelfSettings) -> dict[str, Any]:
    """Reach on the test clips of each variant and of all pooled: [matched, detected, labelled]."""
    counts = {
        name: matched_detected_labelled(score([p for p in pairs if p[0].split == "test"], settings))
        for name, pairs in by_variant.items()
    }
    counts["pooled"] = [sum(c[i] for c in counts.values()) for i in range(3)]
    return counts


def cached_poses(path: Path) -> dict[str, Pairs]:
    """The poses kept by an earlier run; one that cannot be read (another version of intentcam
    wrote it, or it is not such a file) ends the bench with a one-line error and status 2."""
    try:
        by_variant = pickle.loads(path.read_bytes())
        # Poses kept by earlier versions lack the aspect ratio (before view units) or the
        # people's paces (before walkers were told from shoppers).
        if (
            isinstance(by_variant, dict)
            and "original" in by_variant
            and all(
                "aspect" in vars(poses) and all("paces" in vars(p) for p in poses.people.values())
                for pairs in by_variant.values()
                for _, poses in pairs
            )
        ):
            return by_variant
    except (OSError, pickle.UnpicklingError, AttributeError, ImportError, EOFError, TypeError):
        pass
    print(f"shelf_invariance: {path}: not poses kept by this version of the bench; delete it or "
          "name another file to take the poses again", file=sys.stderr)  # fmt: skip
    raise SystemExit(2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_clip_arguments(parser, json_help="also write the results as JSON")
    parser.add_argument("--variants", nargs="+", metavar="NAME", choices=[v.name for v in VARIANTS],
                        default=[v.name for v in VARIANTS],
                        help="which variants to run (default: all; 'original' always runs)")  # fmt: skip
    parser.add_argument("--poses", type=Path, metavar="FILE",
                        help="keep the poses in FILE (pickle) and reuse them when it exists")  # fmt: skip
    args = parser.parse_args()
    settings, clips, poses_of = labelled_clips(args, "shelf_invariance")
    wanted = [v for v in VARIANTS if v.name == "original" or v.name in args.variants]
    if args.poses and args.poses.is_file():
        by_variant = cached_poses(args.poses)
    else:
        with tempfile.TemporaryDirectory(prefix="shelf-invariance-") as scratch:
            by_variant = {}
            for variant in wanted:
                folder = Path(scratch) / variant.name.replace(" ", "_").replace(":", "x")
                folder.mkdir()
                by_variant[variant.name] = variant_poses(clips, variant, poses_of, folder)
        if args.poses:
            args.poses.write_bytes(pickle.dumps(by_variant))
    results = {name: score(pairs, settings) for name, pairs in by_variant.items()}
    names = [row["clip"] for row in results["original"]["clips"]]
    print(f"{'reach m/d/l':<28}" + "".join(f"{name[:11]:>12}" for name in results))
    for index, name in enumerate(names):
        cells = ["/".join(map(str, r["clips"][index]["reach"])) for r in results.values()]
        print(f"{name[:27]:<28}" + "".join(f"{cell:>12}" for cell in cells))
    for kind in ("reach", "inspect", "put_back"):
        cells = ["/".join(map(str, matched_detected_labelled(r, kind))) for r in results.values()]
        print(f"{'all clips, ' + kind:<28}" + "".join(f"{cell:>12}" for cell in cells))
    cells = [str(r["total"]["false_per_quiet_minute"]) for r in results.values()]
    print(f"{'false per quiet minute':<28}" + "".join(f"{cell:>12}" for cell in cells))
    # Thresholds chosen on the tune clips of every variant at once: a choice that a camera's
    # noise cannot make lucky, reported on the test clips of every variant.
    chosen, tuned_f1 = choose(
        [p for pairs in by_variant.values() for p in pairs if p[0].split == "tune"], settings
    )
    changed = {k: v for k, v in asdict(chosen).items() if asdict(settings)[k] != v}
    print(f"\nchosen on the tune clips of every variant (reach F1 {tuned_f1:.3f}): "
          f"{changed or 'the shipped thresholds'}")  # fmt: skip
    tests = {
        "shipped": held_out_reach(by_variant, settings),
        "chosen": held_out_reach(by_variant, chosen),
    }
    print(f"{'test reach m/d/l':<28}" + "".join(f"{name[:11]:>12}" for name in tests["shipped"]))
    for label, counts in tests.items():
        cells = ["/".join(map(str, c)) for c in counts.values()]
        print(f"{label:<28}" + "".join(f"{cell:>12}" for cell in cells))
    document = {"variants": results, "chosen": asdict(chosen), "test_reach": tests}
    write_report(document, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

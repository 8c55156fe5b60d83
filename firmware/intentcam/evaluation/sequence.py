"""A MOTChallenge-style sequence folder: ``seqinfo.ini``, ``gt/gt.txt``, optional lines and zones."""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from intentcam.config import LineConfig, ZoneConfig, describe_validation_error, read_toml
from intentcam.errors import ConfigError, UserError
from intentcam.resources import project_file

#: Where the project keeps lines/zones for read-only sequence folders (see evaluation/README.md).
OVERLAY_ROOT = project_file("evaluation/sequences")


@dataclass(frozen=True)
class Sequence:
    name: str
    folder: Path
    video: Path
    fps: float
    length: int
    width: int
    height: int
    #: (N, 6) float: frame (1-based), id, left, top, width, height (pixels), evaluated boxes only.
    gt: np.ndarray
    lines: list[LineConfig]
    zones: list[ZoneConfig]


def _overlay_file(folder: Path, name: str, overlay_root: Path) -> Path | None:
    for candidate in (folder / name, overlay_root / folder.name / name):
        if candidate.is_file():
            return candidate
    return None


def _tables(path: Path | None, key: str, adapter: TypeAdapter[list[Any]]) -> list[Any]:
    if path is None:
        return []
    data = read_toml(path)
    try:
        return adapter.validate_python(data.get(key, []))
    except ValidationError as exc:
        raise ConfigError(
            [f"{path}: {key}.{line}" for line in describe_validation_error(exc)]
        ) from None


def load_sequence(folder: Path, overlay_root: Path = OVERLAY_ROOT) -> Sequence:
    """Read a sequence folder; every problem is a one-line :class:`UserError`."""
    info_path = folder / "seqinfo.ini"
    if not info_path.is_file():
        raise UserError(f"{folder}: no seqinfo.ini (expected a MOTChallenge-style folder)")
    parser = configparser.ConfigParser()
    try:
        parser.read(info_path, encoding="utf-8")
        section = parser["Sequence"]
        video = folder / section["imDir"]
        fps = float(section["frameRate"])
        length = int(section["seqLength"])
        width, height = int(section["imWidth"]), int(section["imHeight"])
    except (KeyError, ValueError, configparser.Error) as exc:
        raise UserError(f"{info_path}: missing or invalid field ({exc})") from None
    if not video.is_file():
        raise UserError(f"{info_path}: imDir {video.name} is not a video file in {folder}")
    gt_path = folder / "gt" / "gt.txt"
    try:
        gt = np.loadtxt(gt_path, delimiter=",", ndmin=2)
    except (OSError, ValueError) as exc:
        raise UserError(f"{gt_path}: cannot read MOT ground truth ({exc})") from None
    if gt.shape[1] < 6:
        raise UserError(f"{gt_path}: expected at least 6 columns, found {gt.shape[1]}")
    evaluated = gt[:, 6] != 0 if gt.shape[1] > 6 else np.ones(len(gt), dtype=bool)
    pedestrians = gt[:, 7] == 1 if gt.shape[1] > 7 else np.ones(len(gt), dtype=bool)
    gt = gt[evaluated & pedestrians, :6]
    lines = _tables(
        _overlay_file(folder, "lines.toml", overlay_root), "lines", TypeAdapter(list[LineConfig])
    )
    zones = _tables(
        _overlay_file(folder, "zones.toml", overlay_root), "zones", TypeAdapter(list[ZoneConfig])
    )
    return Sequence(
        section.get("name", folder.name),
        folder,
        video,
        fps,
        length,
        width,
        height,
        gt,
        lines,
        zones,
    )

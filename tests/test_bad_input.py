"""Bad input anywhere gets one clear line and the right exit code: environment variables like the
config file, unknown variables named, sources that yield nothing, degenerate geometry."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from intentcam.config import load_config, warn_unknown_environment
from intentcam.errors import ConfigError
from tests.cli import run_cli


def test_a_bad_environment_value_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {"INTENTCAM_PATHS__STATE_DIR": str(tmp_path), "INTENTCAM_CAMERA__RESOLUTION": "foo"}
    result = run_cli("run", "--max-frames", "1", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "INTENTCAM_CAMERA__RESOLUTION='foo'" in lines[0]
    assert "Traceback" not in result.stderr


def test_unknown_variables_are_named(monkeypatch: Any, caplog: Any) -> None:
    monkeypatch.setenv("INTENTCAM_DETECTR__THREADS", "2")
    monkeypatch.setenv("INTENTCAM_MODEL_MIRROR", "/somewhere")  # a tool's variable: fine
    with caplog.at_level(logging.WARNING):
        assert warn_unknown_environment() == ["INTENTCAM_DETECTR__THREADS"]
    assert "INTENTCAM_DETECTR__THREADS" in caplog.text


@pytest.mark.parametrize(
    "image",
    [
        [[0.5, 0.5]] * 4,  # four equal points
        [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3], [0.4, 0.4]],  # on one line
        [[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]],  # crossed
    ],
)
def test_degenerate_homographies_are_refused(tmp_path: Path, image: list[list[float]]) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f"[analytics.homography]\nimage = {image}\n"
        "floor = [[0, 0], [4, 0], [4, 3], [0, 3]]\nfloor_size = [4, 3]\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="analytics.homography.image: .*proper quadrilateral"):
        load_config(config)


def test_a_source_without_a_readable_frame_is_an_error(tmp_path: Path, model_dir: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.jpg", "b.png"):
        (folder / name).write_bytes(b"not an image")
    env = {
        "INTENTCAM_PATHS__STATE_DIR": str(tmp_path / "s"),
        "INTENTCAM_PATHS__MODEL_DIR": str(model_dir),
    }
    result = run_cli("run", "--source", str(folder), "--sink", "none", env=env)
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith("no readable frame (not a video, or images that do not decode)")
    )


def test_the_default_device_id_is_unique_per_machine(tmp_path: Path) -> None:
    from intentcam.config import _default_device_id

    machine = tmp_path / "machine-id"
    machine.write_text("3d1219c7aa0b4e7f9c1d2e3f40516273\n")
    with_id = _default_device_id((machine,))
    assert with_id.endswith("-3d1219c7")
    assert _default_device_id((tmp_path / "absent",)) == with_id.removesuffix("-3d1219c7")

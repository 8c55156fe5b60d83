"""Shared fixtures: the real models (fetched from the mirror into a temp dir), real data paths."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from intentcam.config import Settings, load_config
from intentcam.detect import SsdPersonDetector, build_detector
from intentcam.models import Fetcher, Manifest, load_manifest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INTENTCAM_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data"
CONCOURSE = DATA / "concourse_overhead.avi"
MALL = DATA / "counting" / "mall_dataset" / "mall_frames_0001-0400.mp4"
CAVIAR = DATA / "mot" / "caviar_oneleaveshop1_cor"


def mirror_dir() -> Path | None:
    value = os.environ.get("INTENTCAM_MODEL_MIRROR")
    if value:
        return Path(value)
    candidate = SHARED / "models"
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def manifest() -> Manifest:
    return load_manifest()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory, manifest: Manifest) -> Path:
    """Every manifest model, fetched and verified by the project's own fetcher."""
    folder = tmp_path_factory.mktemp("models")
    fetcher = Fetcher(manifest, folder, mirror=mirror_dir())
    for spec in manifest.models:
        fetcher.fetch(spec)
    return folder


@pytest.fixture()
def config_file(tmp_path: Path, model_dir: Path) -> Callable[[str], Path]:
    """Write a TOML config (pointing at the test model dir) and return its path."""

    def write(body: str = "") -> Path:
        path = tmp_path / "intentcam.toml"
        state = tmp_path / "state"
        if "[paths]" not in body:
            body += f'\n[paths]\nstate_dir = "{state}"\nmodel_dir = "{model_dir}"\n'
        path.write_text(body, encoding="utf-8")
        return path

    return write


@pytest.fixture()
def make_settings(tmp_path: Path, model_dir: Path) -> Callable[..., Settings]:
    """Settings with the test model dir; keyword arguments are section override dicts."""

    def build(**sections: dict[str, Any]) -> Settings:
        empty = tmp_path / "empty.toml"
        empty.write_text("", encoding="utf-8")
        overrides: dict[str, Any] = {"paths": {"state_dir": str(tmp_path / "state"),
                                               "model_dir": str(model_dir)}}
        overrides.update(sections)
        return load_config(empty, overrides=overrides)

    return build


@pytest.fixture(scope="session")
def detector(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> SsdPersonDetector:
    """The default person detector on the real SSD model (auto tiling)."""
    empty = tmp_path_factory.mktemp("cfg") / "empty.toml"
    empty.write_text("", encoding="utf-8")
    settings = load_config(empty, overrides={"paths": {"model_dir": str(model_dir)}})
    return build_detector(settings)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 240,
            **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``python -m intentcam ARGS`` as a user would, capturing output."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("INTENTCAM_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "intentcam", *args], capture_output=True,
                           text=True, timeout=timeout, env=full_env, **kwargs)

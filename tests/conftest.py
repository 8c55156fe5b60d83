"""Shared fixtures: the real models, fetched from the mirror into a temp dir by our own fetcher.

Data paths live in ``tests/data.py``, the CLI helper in ``tests/cli.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from intentcam.config import Settings, load_config
from intentcam.detect import SsdPersonDetector, build_detector
from intentcam.models import Fetcher, Manifest, load_manifest
from tests.data import mirror_dir


@pytest.fixture(scope="session")
def manifest() -> Manifest:
    return load_manifest()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory, manifest: Manifest) -> Path:
    """Every model the daemon uses, fetched and verified by the project's own fetcher."""
    folder = tmp_path_factory.mktemp("models")
    fetcher = Fetcher(manifest, folder, mirror=mirror_dir())
    for spec in manifest.in_use():
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
        overrides: dict[str, Any] = {
            "paths": {"state_dir": str(tmp_path / "state"), "model_dir": str(model_dir)}
        }
        overrides.update(sections)
        return load_config(empty, overrides=overrides)

    return build


@pytest.fixture(scope="session")
def detector(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> SsdPersonDetector:
    """SSD MobileNet v1 (auto tiling): the tiling and box-limit tests are about this family."""
    empty = tmp_path_factory.mktemp("cfg") / "empty.toml"
    empty.write_text("", encoding="utf-8")
    settings = load_config(
        empty,
        overrides={
            "paths": {"model_dir": str(model_dir)},
            "detector": {"model": "ssd_mobilenet_v1_coco_quant"},
        },
    )
    detector = build_detector(settings)
    assert isinstance(detector, SsdPersonDetector)
    return detector


@pytest.fixture(scope="session")
def ota_kit(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Signing keys, and bundles of the real SSD v2 model built on demand (see tests/ota_kit)."""
    from tests.ota_kit import make_kit

    return make_kit(tmp_path_factory.mktemp("ota"))

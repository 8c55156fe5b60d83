"""What the daemon imports when it starts must be declared, or a device install crashes."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from tests.data import CONCOURSE, DATA, ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {
        _normalise(re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0]) for dep in project["dependencies"]
    }


def _module_level_imports() -> dict[str, str]:
    """Top-level package -> a file importing it at module level (not inside functions)."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "firmware" / "intentcam").rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def _import_providers() -> dict[str, list[str]]:
    """Top-level import name -> the distributions installing it. Python 3.10's
    ``packages_distributions`` reads only ``top_level.txt``, which wheels built without
    setuptools (paho-mqtt's) lack; 3.11 also infers the names from each distribution's files,
    and so does this."""
    providers: dict[str, list[str]] = {}
    for dist in metadata.distributions():
        names = (dist.read_text("top_level.txt") or "").split() or {
            file.parts[0] if len(file.parts) > 1 else file.name.removesuffix(".py")
            for file in dist.files or []
            if file.suffix == ".py"
        }
        for name in names:
            providers.setdefault(name, []).append(dist.metadata["Name"])
    return providers


def test_every_module_level_import_is_a_declared_dependency() -> None:
    declared = _declared()
    distributions = _import_providers()
    missing = []
    for package, where in _module_level_imports().items():
        if package in sys.stdlib_module_names or package in ("intentcam", "__future__"):
            continue
        providers = {_normalise(d) for d in distributions.get(package, [package])}
        if not providers & declared:
            missing.append(f"{package} ({where})")
    assert not missing, f"imported at module level but not in [project] dependencies: {missing}"


def _evaluation_overlays() -> list[str]:
    """Every hand-made file under evaluation/ that the evaluation commands read."""
    folder = ROOT / "evaluation"
    files = [*folder.glob("sequences/*/*.toml"), *folder.glob("shelf/**/labels.json")]
    return sorted(str(path.relative_to(ROOT)) for path in files)


def test_every_evaluation_overlay_is_installed_with_the_wheel() -> None:
    data_files = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"
    ]["data-files"]
    installed = {
        f"{target.removeprefix('share/intentcam/')}/{Path(source).name}"
        for target, sources in data_files.items()
        for source in sources
    }
    missing = [overlay for overlay in _evaluation_overlays() if overlay not in installed]
    assert not missing, f"add to [tool.setuptools.data-files] in pyproject.toml: {missing}"


#: Python versions a device may run (Jetson's Ubuntu 22.04 has 3.10, Trixie 3.13).
DEVICE_PYTHONS = ("3.10", "3.11", "3.12", "3.13")
#: The oldest C library among the supported device images (Ubuntu 22.04 on Jetson: glibc 2.35).
DEVICE_GLIBC = 35


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``make dist`` would build, built once for this module's tests."""
    if os.environ.get("INTENTCAM_OFFLINE") == "1":
        pytest.skip("INTENTCAM_OFFLINE=1")
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
                   check=True, capture_output=True)  # fmt: skip
    return next(dist.glob("intentcam-*.whl"))


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.parametrize("python", DEVICE_PYTHONS)
def test_an_arm64_device_installs_from_wheels_alone(
    tmp_path: Path, wheel: Path, python: str
) -> None:
    """What pip would fetch on an arm64 device for each supported Python: every dependency must
    come as a binary wheel (a Pi or Jetson has no compiler to spare, and some have none) built
    for a C library no newer than the oldest device image's. Resolution only (``--dry-run``)."""
    platforms = [f"manylinux_2_{minor}_aarch64" for minor in range(17, DEVICE_GLIBC + 1)]
    report = tmp_path / "report.json"
    resolved = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
         "--only-binary=:all:", *(f"--platform={tag}" for tag in ["manylinux2014_aarch64", *platforms]),
         f"--python-version={python}", "--target", str(tmp_path / "target"),
         "--report", str(report), str(wheel)],
        capture_output=True, text=True)  # fmt: skip
    assert resolved.returncode == 0, resolved.stderr[-2000:]
    installs = json.loads(report.read_text(encoding="utf-8"))["install"]
    files = {item["metadata"]["name"]: item["download_info"]["url"].rsplit("/", 1)[-1]
             for item in installs}  # fmt: skip
    assert {"ai-edge-litert", "onnxruntime", "numpy", "opencv-python-headless"} <= files.keys()
    assert all(name.endswith(".whl") for name in files.values()), files


@pytest.mark.slow
@pytest.mark.network
def test_the_wheel_alone_installs_and_runs_as_on_a_device(
    tmp_path: Path, model_dir: Path, wheel: Path
) -> None:
    """How a device installs: the built wheel into a fresh virtualenv, no extras, dependencies
    from the package index; then ``intentcam run`` on a clip and ``intentcam detect`` on an
    image. A run-time import missing from the dependencies fails here."""
    members = zipfile.ZipFile(wheel).namelist()
    assert "intentcam/telemetry/schemas/counts.schema.json" in members
    assert any(m.endswith("share/intentcam/models_tflite/manifest.toml") for m in members)
    for overlay in _evaluation_overlays():
        assert any(m.endswith(f"share/intentcam/{overlay}") for m in members), (
            f"{overlay} is missing from pyproject.toml's data-files"
        )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
                             capture_output=True, text=True)  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    installed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list"],
                               capture_output=True, text=True).stdout.lower()  # fmt: skip
    for heavy in ("scipy", "tensorflow", "torch", "pycoral", "trackers"):
        assert f"\n{heavy} " not in installed, f"{heavy} is not a device dependency"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTENTCAM_")}
    env.update(INTENTCAM_PATHS__STATE_DIR=str(tmp_path / "state"),
               INTENTCAM_PATHS__MODEL_DIR=str(model_dir))  # fmt: skip
    intentcam = str(venv / "bin" / "intentcam")
    run = subprocess.run([intentcam, "run", "--source", str(CONCOURSE), "--max-frames", "30",
                          "--sink", "none", "--json"], capture_output=True, text=True, env=env)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout.splitlines()[-1])
    assert summary["frames"] == 30 and summary["people_per_frame"] > 1
    detect = subprocess.run([intentcam, "detect", str(DATA / "kite_and_cold.jpg"), "--json"],
                            capture_output=True, text=True, env=env)  # fmt: skip
    assert detect.returncode == 0, detect.stderr[-2000:]
    assert json.loads(detect.stdout)["count"] >= 3, detect.stdout
    # Away from a checkout the evaluation's overlays come from the install's share folder.
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "from intentcam.resources import project_file; "
         "print(project_file('evaluation/shelf/labels.json').resolve())"],
        capture_output=True, text=True, env=env, cwd=tmp_path)  # fmt: skip
    labels = Path(found.stdout.strip())
    assert labels.is_file() and labels.is_relative_to(venv.resolve()), found.stdout + found.stderr

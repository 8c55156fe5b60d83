"""provisioning/install.sh: every step printed by --dry-run with nothing changed, a real install
into another root (--root) that a second run leaves untouched, and --uninstall."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.data import ROOT

SCRIPT = ROOT / "provisioning" / "install.sh"
STEPS = ("sysusers", "user", "venv", "wheel", "unit", "udev", "firstboot", "config", "ota-keys")
SYSTEM_PATHS = ("/opt/intentcam", "/etc/intentcam/intentcam.toml",
                "/etc/systemd/system/intentcam.service", "/usr/lib/sysusers.d/intentcam.conf")  # fmt: skip


def install(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=600)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path below ``folder`` with its size and modification time."""
    found = {}
    for path in folder.rglob("*"):
        if not path.is_symlink():
            stat = path.stat()
            found[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns)
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
                   check=True, capture_output=True)  # fmt: skip
    return next(dist.glob("intentcam-*.whl"))


def test_dry_run_prints_every_step_and_changes_nothing(wheel: Path, tmp_path: Path) -> None:
    before = {path: os.path.exists(path) for path in SYSTEM_PATHS}
    done = install("--dry-run", "--wheel", str(wheel))
    assert done.returncode == 0, done.stderr
    for name in STEPS:
        assert f"[{name}] would:" in done.stdout or f"[{name}] ok:" in done.stdout, name
    assert {path: os.path.exists(path) for path in SYSTEM_PATHS} == before
    target = tmp_path / "image"
    target.mkdir()
    assert install("--dry-run", "--root", str(target), "--wheel", str(wheel)).returncode == 0
    assert not any(target.iterdir())


@pytest.mark.slow
@pytest.mark.network
def test_install_is_idempotent_and_uninstall_keeps_the_data(wheel: Path, tmp_path: Path) -> None:
    if os.environ.get("INTENTCAM_OFFLINE") == "1":
        pytest.skip("INTENTCAM_OFFLINE=1")
    target = tmp_path / "image"
    target.mkdir()
    first = install("--root", str(target), "--wheel", str(wheel))
    assert first.returncode == 0, first.stdout + first.stderr
    assert (target / "opt/intentcam/venv/bin/intentcam").exists()
    assert (target / "etc/systemd/system/intentcam.service").read_bytes() == (
        ROOT / "systemd/intentcam.service"
    ).read_bytes()
    config = target / "etc/intentcam/intentcam.toml"
    assert config.stat().st_mode & 0o777 == 0o640
    assert "intentcam:" in (target / "etc/passwd").read_text()
    before = snapshot(target)
    time.sleep(0.05)
    second = install("--root", str(target), "--wheel", str(wheel))
    assert second.returncode == 0, second.stderr
    assert all(f"[{name}] ok:" in second.stdout for name in STEPS), second.stdout
    assert snapshot(target) == before, "a second run changed files"
    config.write_text(config.read_text() + "\n# edited by the installer\n")
    removed = install("--root", str(target), "--uninstall")
    assert removed.returncode == 0, removed.stderr
    assert not (target / "opt/intentcam").exists()
    assert not (target / "etc/systemd/system/intentcam.service").exists()
    assert "edited by the installer" in config.read_text()  # the config stays
    assert install("--root", str(target), "--uninstall", "--purge").returncode == 0
    assert not config.exists()


def test_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    done = install("--wheel", str(tmp_path / "none.whl"), "--root", str(tmp_path))
    assert done.returncode == 1 and done.stderr.startswith("install.sh: error:")
    assert install("--frobnicate").returncode == 1


def test_first_boot_import_moves_the_config_and_leaves_no_secret_on_the_card(
    tmp_path: Path,
) -> None:
    from tests.cli import run_cli

    boot, etc = tmp_path / "boot", tmp_path / "etc"
    boot.mkdir()
    config = boot / "intentcam.toml"
    config.write_text('[device]\nid = "cam-door"\nsite = "store-12"\n'
                      '[mqtt]\nhost = "gw.local"\npassword = "s3cret-pw"\n')  # fmt: skip
    done = run_cli("import-config", str(config), "--dest", str(etc), "--json")
    assert done.returncode == 0, done.stderr
    target = etc / "intentcam.toml"
    assert "s3cret-pw" in target.read_text() and target.stat().st_mode & 0o777 == 0o600
    assert not config.exists()
    assert all("s3cret-pw" not in p.read_text() for p in boot.iterdir())
    assert "cam-door" in (boot / "intentcam-imported.txt").read_text()
    bad = boot / "intentcam.toml"
    bad.write_text('[camera]\nresolution = "huge"\n')
    refused = run_cli("import-config", str(bad), "--dest", str(etc))
    assert refused.returncode == 2 and "camera.resolution" in refused.stderr
    assert bad.exists() and "camera.resolution" in (boot / "intentcam-import-error.txt").read_text()
    assert "s3cret-pw" in target.read_text()  # the good config already imported stays

"""The device's install pipeline with real bundles of the real SSD v2 model, and its fault cases:
every one ends refused (nothing loaded or current changes) or rolled back, with the reason.

RAUC's and Mender's tests are the model: faults are injected as ordinary tests (a flipped byte,
a dropped connection, a full disk, a SIGKILL at each step).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from intentcam.config import Settings
from intentcam.models.store import sha256_of
from intentcam.ota.bundle import BundleError
from intentcam.ota.download import Download
from intentcam.ota.install import FAULT_ENV, Installer, store_of
from intentcam.ota.startup import load_active
from tests.cli import run_cli
from tests.ota_kit import BundleServer, resign

pytestmark = pytest.mark.slow


@pytest.fixture()
def device(make_settings: Callable[..., Settings], ota_kit: Any) -> Callable[..., Installer]:
    """An installer for a fresh device state dir that trusts the kit's key."""

    def make(**ota: Any) -> Installer:
        settings = make_settings(ota={"trusted_keys_dir": str(ota_kit.keys), **ota})
        return Installer(settings, store_of(settings))

    return make


def env_for(installer: Installer) -> dict[str, str]:
    settings = installer.settings
    return {
        "INTENTCAM_PATHS__STATE_DIR": str(settings.paths.state_dir),
        "INTENTCAM_PATHS__MODEL_DIR": str(settings.paths.models),
        "INTENTCAM_OTA__TRUSTED_KEYS_DIR": str(settings.ota.trusted_keys_dir),
    }


def install(installer: Installer, bundle: Path, *, commit: bool = False) -> None:
    prepared = installer.prepare(Download(str(bundle)))
    installer.switch(prepared, started=False)
    if commit:
        installer.commit()


def refused(installer: Installer, bundle: Path | str, sha256: str | None = None) -> BundleError:
    before = (installer.store.current(), installer.store.load_state().model_dump())
    with pytest.raises(BundleError) as caught:
        installer.prepare(Download(str(bundle), sha256))
    assert (installer.store.current(), installer.store.load_state().model_dump()) == before
    return caught.value


def test_cli_install_switches_and_a_lower_serial_is_refused(
    device: Callable[..., Installer], ota_kit: Any
) -> None:
    installer = device()
    env = env_for(installer)
    newer = ota_kit.bundle("serial-2", serial=2, version="1.1.0")
    ok = run_cli("ota", "install", str(newer), "--json", env=env)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.splitlines()[-1])["trial"]["serial"] == 2
    older = run_cli("ota", "install", str(ota_kit.bundle("good")), env=env)
    assert older.returncode == 1
    assert "not above the installed serial 2" in older.stderr
    assert "Traceback" not in older.stderr
    status = run_cli("ota", "status", "--json", env=env)
    body = json.loads(status.stdout)
    assert body["trial"]["version"] == "1.1.0" and body["serials"] == {"person_detector": 2}
    assert body["current"] == body["trial"]["sha256"]


def test_a_signed_rollback_bundle_may_go_below_the_serial(
    device: Callable[..., Installer], ota_kit: Any
) -> None:
    installer = device()
    install(installer, ota_kit.bundle("serial-2", serial=2, version="1.1.0"), commit=True)
    downgrade = ota_kit.bundle("rollback-1", "--rollback", serial=1, version="1.0.1")
    install(installer, downgrade)
    assert installer.store.load_state().trial.version == "1.0.1"


def test_a_model_that_does_not_load_is_refused(
    device: Callable[..., Installer], ota_kit: Any, tmp_path: Path
) -> None:
    good = ota_kit.bundle("good")
    model_name = ota_kit.model.name
    broken = resign(
        ota_kit, good, tmp_path / "broken.swu", files={model_name: b"TFL3" + os.urandom(4000)}
    )
    problem = refused(device(), broken)
    assert problem.step == "self_test" and "does not load" in problem.reason


def test_a_model_over_its_latency_budget_is_refused(
    device: Callable[..., Installer], ota_kit: Any
) -> None:
    slow = ota_kit.bundle("slow", budget_ms=0.01)
    problem = refused(device(), slow)
    assert problem.step == "self_test" and "exceeds the 0.01 ms budget" in problem.reason


def test_a_model_that_finds_nobody_on_the_reference_frames_is_refused(
    device: Callable[..., Installer], ota_kit: Any, tmp_path: Path, manifest: Any
) -> None:
    labels = manifest.labels_path(manifest.get("ssd_mobilenet_v2_coco_quant"))
    lines = labels.read_text().splitlines()
    lines[0], lines[7] = lines[7], lines[0]  # "person" now names COCO's trucks
    swapped = tmp_path / "coco_labels.txt"
    swapped.write_text("\n".join(lines) + "\n")
    blind = ota_kit.bundle(
        "blind", "--labels", str(swapped), "--reference-from", str(ota_kit.bundle("good"))
    )
    problem = refused(device(), blind)
    assert problem.step == "self_test"
    assert "found nobody" in problem.reason or "people, the reference has" in problem.reason


def test_a_full_disk_refuses_the_unpack(device: Callable[..., Installer], ota_kit: Any) -> None:
    problem = refused(device(min_free_bytes=1 << 50), ota_kit.bundle("good"))
    assert problem.step == "unpack" and "not enough free space" in problem.reason


def test_a_really_full_filesystem_refuses_the_unpack(
    device: Callable[..., Installer], ota_kit: Any, tmp_path: Path
) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    if (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("cannot mount a small tmpfs here (not root)")
    try:
        installer = device(min_free_bytes=0)
        installer.store.root = mount / "models"
        problem = refused(installer, ota_kit.bundle("good"))
        assert problem.step == "unpack"
        assert "No space left" in problem.reason or "not enough free space" in problem.reason
        assert not list((mount / "models" / "store").glob(".staging-*"))
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_truncated_download_resumes_with_a_range_request(
    device: Callable[..., Installer], ota_kit: Any
) -> None:
    bundle = ota_kit.bundle("good")
    installer = device(download_retries=3)
    with BundleServer() as server:
        url = server.add(bundle)
        server.drops = 1
        prepared = installer.prepare(Download(url, sha256_of(bundle)))
    assert prepared.installed.serial == 1
    assert server.requests[0] == "" and server.requests[1].startswith("bytes=")
    assert int(server.requests[1][6:].split("-")[0]) > 0


def test_a_server_that_keeps_dropping_is_given_up_on(
    device: Callable[..., Installer], ota_kit: Any
) -> None:
    with BundleServer() as server:
        url = server.add(ota_kit.bundle("good"))
        server.drops = 100
        problem = refused(device(download_retries=2), url)
    assert problem.step == "download" and "gave up after 3 attempts" in problem.reason


def test_an_oversized_download_and_a_wrong_hash_are_refused(
    device: Callable[..., Installer], ota_kit: Any
) -> None:
    bundle = ota_kit.bundle("good")
    with BundleServer() as server:
        url = server.add(bundle)
        too_big = refused(device(max_bundle_bytes=1 << 20), url)
        wrong = refused(device(), url, "0" * 64)
    assert too_big.step == "download" and "limit" in too_big.reason
    assert wrong.step == "download" and "sha256" in wrong.reason


STEPS = ("download", "verify", "unpack", "self_test", "switch", "switched")


@pytest.mark.parametrize("step", STEPS)
def test_sigkill_at_each_step_leaves_a_working_model(
    device: Callable[..., Installer], ota_kit: Any, step: str
) -> None:
    installer = device()
    install(installer, ota_kit.bundle("good"), commit=True)
    env = {**env_for(installer), FAULT_ENV: f"kill:{step}"}
    newer = ota_kit.bundle("serial-2", serial=2, version="1.1.0")
    killed = run_cli("ota", "install", str(newer), env=env)
    assert killed.returncode == -9, killed.stderr
    active = load_active(installer)
    assert active.detector.detect(_people_frame()).boxes.shape[0] > 0
    assert active.installed is not None
    expected = "1.1.0" if step == "switched" else "1.0.0"
    assert active.installed.version == expected
    assert active.in_trial == (step == "switched")
    assert not list(installer.store.store.glob(".staging-*"))


def _people_frame() -> Any:
    import cv2

    from tests.ota_kit import FRAMES

    return cv2.imread(str(FRAMES[0]))


def test_a_trial_started_once_is_rolled_back_at_the_next_start(
    device: Callable[..., Installer], ota_kit: Any
) -> None:
    installer = device()
    install(installer, ota_kit.bundle("good"), commit=True)
    install(installer, ota_kit.bundle("serial-2", serial=2, version="1.1.0"))
    first = load_active(installer)
    assert first.in_trial and first.installed.version == "1.1.0"
    second = load_active(installer)  # the first start never committed: it crashed
    assert second.installed.version == "1.0.0" and not second.in_trial
    assert second.rolled_back and "was in probation" in second.rolled_back
    assert installer.store.load_state().trial is None


def test_a_corrupt_active_model_falls_back_instead_of_exiting(
    device: Callable[..., Installer], ota_kit: Any
) -> None:
    installer = device()
    install(installer, ota_kit.bundle("good"), commit=True)
    install(installer, ota_kit.bundle("serial-2", serial=2, version="1.1.0"), commit=True)
    current = installer.store.path_of(installer.store.current())
    model = current / ota_kit.model.name
    data = bytearray(model.read_bytes())
    data[5000] ^= 0xFF
    model.write_bytes(bytes(data))
    active = load_active(installer)
    assert active.installed.version == "1.0.0"
    assert active.degraded and "1.1.0" in active.degraded and "sha256" in active.degraded
    # With every stored version gone, the packaged models run, still degraded with the reason.
    for path in installer.store.store.iterdir():
        for file in path.glob("*.tflite"):
            file.write_bytes(b"broken")
    factory = load_active(installer)
    assert factory.installed is None and factory.degraded
    assert installer.store.current() is None


def test_old_versions_are_pruned_but_the_loaded_one_is_kept(
    device: Callable[..., Installer], ota_kit: Any
) -> None:
    installer = device(keep_versions=1)
    for serial in (1, 2, 3):
        bundle = ota_kit.bundle(f"prune-{serial}", serial=serial, version=f"1.{serial}.0")
        install(installer, bundle, commit=True)
    state = installer.store.load_state()
    kept = {p.name for p in installer.store.store.iterdir()}
    assert state.committed.version == "1.3.0" and [p.version for p in state.previous] == ["1.2.0"]
    assert kept == {state.committed.sha256, state.previous[0].sha256}
    rolled = installer.rollback("operator")
    assert rolled.committed.version == "1.2.0"
    assert installer.store.current() == rolled.committed.sha256

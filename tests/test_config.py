"""Configuration: TOML under environment, one line per bad field, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from intentcam.config import Settings, load_config
from intentcam.errors import ConfigError
from tests.cli import run_cli
from tests.data import ROOT


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_file_values_are_read_and_defaults_fill_the_rest(tmp_path: Path) -> None:
    settings = load_config(
        write(
            tmp_path,
            '[device]\nid = "cam-1"\nsite = "s1"\n[detector]\nthreads = 2\ntiling = "2x2"\n',
        )
    )
    assert settings.device.id == "cam-1"
    assert settings.detector.threads == 2
    assert settings.detector.tiling == "2x2"
    assert settings.detector.delegate == "auto"
    assert settings.camera.fps_cap == 10.0


def test_environment_wins_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTENTCAM_DETECTOR__THREADS", "3")
    monkeypatch.setenv("INTENTCAM_CAMERA__SOURCE", "rtsp://cam/stream")
    settings = load_config(write(tmp_path, "[detector]\nthreads = 2\n"))
    assert settings.detector.threads == 3
    assert settings.camera.source == "rtsp://cam/stream"


def test_overrides_win_over_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTENTCAM_DETECTOR__THREADS", "3")
    settings = load_config(write(tmp_path, ""), overrides={"detector": {"threads": 1}})
    assert settings.detector.threads == 1


def test_model_dir_defaults_under_state_dir(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, f'[paths]\nstate_dir = "{tmp_path}"\n'))
    assert settings.paths.models == tmp_path / "models"


def test_every_bad_field_is_named_with_its_dotted_path(tmp_path: Path) -> None:
    body = (
        '[detector]\nthreads = -1\ndelegate = "gpu"\n[camera]\nfps_cap = 0\n'
        '[device]\nid = "has space"\nnope = 1\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, body))
    lines = caught.value.problems
    assert len(lines) == 5
    joined = "\n".join(lines)
    for path in (
        "detector.threads",
        "detector.delegate",
        "camera.fps_cap",
        "device.id",
        "device.nope",
    ):
        assert path in joined
    assert "unknown setting" in joined


def test_bad_environment_value_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTENTCAM_DETECTOR__SCORE_THRESHOLD", "1.5")
    with pytest.raises(ConfigError, match=r"detector\.score_threshold"):
        load_config(write(tmp_path, ""))


@pytest.mark.parametrize(
    "body, expected",
    [
        ("[detector\nthreads = 1", "invalid TOML"),
        (None, "config file not found"),
    ],
)
def test_unreadable_files_are_one_line(tmp_path: Path, body: str | None, expected: str) -> None:
    path = tmp_path / "missing.toml" if body is None else write(tmp_path, body)
    with pytest.raises(ConfigError, match=expected) as caught:
        load_config(path)
    assert len(caught.value.problems) == 1


def test_example_config_is_valid_and_documents_every_section() -> None:
    example = ROOT / "config" / "intentcam.example.toml"
    settings = load_config(example)
    assert settings.device.id == "cam-entrance-01"
    text = example.read_text(encoding="utf-8")
    for section in Settings.model_fields:
        assert f"[{section}]" in text or f"[[{section}]]" in text, section


def test_cli_reports_bad_config_with_exit_2_and_no_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, '[detector]\nthreads = "many"\n[camera]\nkind = "webcam"\n')
    result = run_cli("run", "--config", str(path), "--max-frames", "1")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("intentcam: error:")]
    assert any("detector.threads" in line for line in errors)
    assert any("camera.kind" in line for line in errors)


def test_duplicate_line_or_zone_ids_are_refused(tmp_path: Path) -> None:
    body = (
        '[[zones]]\nid = "a"\npoints = [[0, 0], [1, 0], [1, 1]]\n'
        '[[zones]]\nid = "a"\npoints = [[0, 0], [1, 0], [0, 1]]\n'
    )
    with pytest.raises(ConfigError, match="zones: duplicate id"):
        load_config(write(tmp_path, body))


def test_secrets_come_from_their_files_and_a_bad_file_is_named(tmp_path: Path) -> None:
    password, token = tmp_path / "password", tmp_path / "token"
    password.write_text("pass with spaces\nsecond line\n")
    token.write_text("tok3n  # the DDI target token\n")
    settings = load_config(
        overrides={"mqtt": {"password_file": password}, "ota": {"auth_token_file": token}}
    )
    assert settings.mqtt.read_password() == "pass with spaces"
    assert settings.ota.read_token() == "tok3n"
    inline = load_config(overrides={"mqtt": {"password": "inline", "password_file": password}})
    assert inline.mqtt.read_password() == "inline"
    assert load_config().mqtt.read_password() is None

    token.write_text("")
    with pytest.raises(
        ConfigError, match=r"ota.auth_token_file: cannot read .*token \(empty file\)"
    ):
        settings.ota.read_token()
    password.unlink()
    with pytest.raises(ConfigError, match=r"mqtt.password_file: cannot read .*password \(No such"):
        settings.mqtt.read_password()

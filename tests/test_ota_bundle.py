"""Fleet side: keygen, build and verify from the command line, and every way a bundle is refused
before anything is unpacked (tampering, signatures, archive tricks, size)."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from intentcam.ota.bundle import (
    MANIFEST,
    SIGNATURE,
    SW_DESCRIPTION,
    BundleError,
    trusted_keys,
    verify_bundle,
)
from intentcam.ota.cpio import Limits, read_entries, read_entry, write_archive
from intentcam_ota.build import MIN_BUDGET_MS
from tests.ota_kit import LOAD_PROOF_BUDGET_MS, SSD_V2, run_ota
from tests.test_ota_cpio import raw_entry


def members_of(path: Path) -> list[tuple[str, bytes]]:
    data = path.read_bytes()
    handle = io.BytesIO(data)
    return [(e.name, read_entry(handle, e)) for e in list(read_entries(handle, len(data)))]


def rewrite(path: Path, members: list[tuple[str, bytes]], tail: bytes = b"") -> Path:
    out = io.BytesIO()
    write_archive(out, members)  # type: ignore[arg-type]
    data = out.getvalue()
    if tail:  # hand-made entries go before the trailer
        trailer_at = data.rindex(b"070701")
        data = data[:trailer_at] + tail + data[trailer_at:]
    path.write_bytes(data)
    return path


def test_keygen_writes_a_private_key_only_its_owner_reads(ota_kit: Any) -> None:
    private = ota_kit.keys / "ota.key"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in private.read_bytes()
    assert b"PUBLIC KEY" in (ota_kit.keys / "ota.pub").read_bytes()
    again = run_ota("keygen", "--out", str(ota_kit.keys))
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr


def test_build_then_verify_from_the_command_line(ota_kit: Any) -> None:
    bundle = ota_kit.bundle("good")
    result = run_ota(
        "verify", str(bundle), "--trusted-key", str(ota_kit.keys / "ota.pub"), "--json"
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["ok"] and body["id"] == SSD_V2 and body["serial"] == 1
    names = [name for name, _ in members_of(bundle)]
    assert names[:3] == [SW_DESCRIPTION, MANIFEST, SIGNATURE]
    description = dict(members_of(bundle))[SW_DESCRIPTION].decode()
    assert 'version = "1.0.0"' in description and "hardware-compatibility" in description
    manifest = json.loads(dict(members_of(bundle))[MANIFEST])
    assert [frame["people"] > 0 for frame in manifest["selftest"]["expected"]] == [True, True]


def test_build_sets_a_latency_budget_from_what_it_measured(ota_kit: Any) -> None:
    """Without ``--latency-budget-ms`` the budget is ten times the build machine's latency, at
    least half a second (the kit's other bundles pass their own, load-proof budget)."""
    measured = ota_kit.bundle("measured", budget_ms=None)
    budget = json.loads(dict(members_of(measured))[MANIFEST])["selftest"]["latency_budget_ms"]
    assert MIN_BUDGET_MS <= budget < LOAD_PROOF_BUDGET_MS


def test_one_flipped_byte_anywhere_in_a_file_is_refused(ota_kit: Any, tmp_path: Path) -> None:
    data = bytearray(ota_kit.bundle("good").read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped = tmp_path / "flipped.swu"
    flipped.write_bytes(bytes(data))
    result = run_ota("verify", str(flipped), "--trusted-key", str(ota_kit.keys / "ota.pub"))
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "does not match" in result.stderr and "Traceback" not in result.stderr


def test_another_key_is_refused_in_one_line(ota_kit: Any) -> None:
    result = run_ota(
        "verify", str(ota_kit.bundle("good")), "--trusted-key", str(ota_kit.other_keys)
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        line
        for line in result.stderr.strip().splitlines()
        if "does not match any trusted key" in line
    ]


def test_build_errors_are_one_line(ota_kit: Any, tmp_path: Path) -> None:
    missing = run_ota(
        "build",
        "--model",
        str(tmp_path / "nope.tflite"),
        "--id",
        SSD_V2,
        "--version",
        "1.0.0",
        "--serial",
        "1",
        "--key",
        str(ota_kit.keys / "ota.key"),
        "--out",
        str(tmp_path / "x.swu"),
    )
    assert (
        missing.returncode == 1
        and "--model" in missing.stderr
        and "Traceback" not in missing.stderr
    )
    bad_version = run_ota(
        "build",
        "--model",
        str(ota_kit.model),
        "--id",
        SSD_V2,
        "--version",
        "one",
        "--serial",
        "1",
        "--key",
        str(ota_kit.keys / "ota.key"),
        "--out",
        str(tmp_path / "x.swu"),
    )
    assert bad_version.returncode == 2 and "--version" in bad_version.stderr


def _tampered_cases(good: Path, tmp: Path) -> dict[str, Path]:
    members = members_of(good)
    as_dict = dict(members)
    manifest = json.loads(as_dict[MANIFEST])
    model_name = manifest["model"]

    def replaced(name: str, value: bytes) -> list[tuple[str, bytes]]:
        return [(n, value if n == name else v) for n, v in members]

    model = bytearray(as_dict[model_name])
    model[1000] ^= 0xFF
    manifest["serial"] = 99
    tampered_manifest = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return {
        "tampered model byte": rewrite(tmp / "model.swu", replaced(model_name, bytes(model))),
        "tampered manifest": rewrite(tmp / "manifest.swu", replaced(MANIFEST, tampered_manifest)),
        "no signature": rewrite(tmp / "nosig.swu", [(n, v) for n, v in members if n != SIGNATURE]),
        "unsigned extra entry": rewrite(tmp / "extra.swu", [*members, ("extra.bin", b"evil")]),
        "traversal entry": rewrite(
            tmp / "trav.swu", members, raw_entry("../../etc/cron.d/x", b"x")
        ),
        "link entry": rewrite(
            tmp / "link.swu", members, raw_entry("link", b"/etc/shadow", stat.S_IFLNK | 0o777)
        ),
        "sw-description not first": rewrite(
            tmp / "order.swu", [members[1], members[0], *members[2:]]
        ),
        "not an archive": _write(tmp / "text.swu", b"hello, this is not cpio" * 10),
    }


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("tampered model byte", "does not match"),
        ("tampered manifest", "does not match any trusted key"),
        ("no signature", "no signature"),
        ("unsigned extra entry", "not in the signed manifest"),
        ("traversal entry", "not a plain file name"),
        ("link entry", "not a regular file"),
        ("sw-description not first", "must be the first entry"),
        ("not an archive", "not a cpio newc archive"),
    ],
)
def test_tampered_bundles_are_refused_with_the_reason(
    ota_kit: Any, tmp_path: Path, case: str, reason: str
) -> None:
    bundle = _tampered_cases(ota_kit.bundle("good"), tmp_path)[case]
    with pytest.raises(BundleError, match=reason) as refused:
        verify_bundle(bundle, trusted_keys(ota_kit.keys))
    assert refused.value.step == "verify"


def test_oversized_archive_is_refused_before_reading(ota_kit: Any) -> None:
    with pytest.raises(BundleError, match="size limit"):
        verify_bundle(
            ota_kit.bundle("good"), trusted_keys(ota_kit.keys), Limits(max_total_bytes=1 << 20)
        )

"""The SWUpdate container (cpio newc): round trip, every bound, and fuzzing of the reader."""

from __future__ import annotations

import io
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intentcam.ota.cpio import (
    ArchiveError,
    Limits,
    _header,
    read_entries,
    read_entry,
    write_archive,
)


def archive(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    write_archive(out, members)  # type: ignore[arg-type]
    return out.getvalue()


def entries(data: bytes, limits: Limits | None = None) -> dict[str, bytes]:
    limits = limits or Limits()
    handle = io.BytesIO(data)
    return {e.name: read_entry(handle, e) for e in list(read_entries(handle, len(data), limits))}


def raw_entry(name: str, data: bytes, mode: int = stat.S_IFREG | 0o644) -> bytes:
    """An entry written by hand, to make what our writer refuses (links, devices, '..')."""
    header = bytearray(_header("x" * len(name), len(data), 1, mode))
    encoded = name.encode()
    header[110 : 110 + len(encoded)] = encoded
    pad = (4 - len(data) % 4) % 4
    return bytes(header) + data + b"\0" * pad


TRAILER = archive([])


def test_round_trip_keeps_order_and_bytes() -> None:
    members = [("sw-description", b"software = {};\n"), ("a.bin", b"\x00\x01\x02"), ("b", b"")]
    data = archive(members)
    assert data[:6] == b"070701"
    handle = io.BytesIO(data)
    listed = list(read_entries(handle, len(data)))
    assert [e.name for e in listed] == ["sw-description", "a.bin", "b"]
    assert entries(data) == dict(members)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (raw_entry("../etc/passwd", b"x"), "not a plain file name"),
        (raw_entry("/abs", b"x"), "not a plain file name"),
        (raw_entry("dir/file", b"x"), "not a plain file name"),
        (raw_entry("link", b"target", stat.S_IFLNK | 0o777), "not a regular file"),
        (raw_entry("dev", b"", stat.S_IFCHR | 0o600), "not a regular file"),
        (raw_entry("sub", b"", stat.S_IFDIR | 0o755), "not a regular file"),
    ],
)
def test_traversal_links_and_special_files_are_refused(entry: bytes, problem: str) -> None:
    with pytest.raises(ArchiveError, match=problem):
        entries(entry + TRAILER)


def test_duplicate_names_hard_links_and_bounds_are_refused() -> None:
    twice = raw_entry("a", b"1") + raw_entry("a", b"2") + TRAILER
    with pytest.raises(ArchiveError, match="twice"):
        entries(twice)
    many = archive([(f"f{i}", b"x") for i in range(5)])
    with pytest.raises(ArchiveError, match="more than 4 entries"):
        entries(many, Limits(max_entries=4))
    big = archive([("big", b"x" * 5000)])
    with pytest.raises(ArchiveError, match="exceeds 4096 bytes"):
        entries(big, Limits(max_total_bytes=4096))


def test_truncated_archives_are_refused() -> None:
    data = archive([("model", b"y" * 1000)])
    for cut in (5, 120, 600, len(data) - len(TRAILER)):
        with pytest.raises(ArchiveError):
            entries(data[:cut])


def test_a_lying_size_cannot_reach_past_the_file() -> None:
    data = bytearray(archive([("model", b"z" * 16)]))
    size_field = 6 + 8 * 6  # the seventh header field is filesize
    data[size_field : size_field + 8] = b"7FFFFFFF"
    with pytest.raises(ArchiveError, match="truncated|exceeds"):
        entries(bytes(data))


@pytest.mark.parametrize("field", [b"-0000001", b"+0000001", b" 0000001", b"0000_001"])
def test_a_header_field_must_be_eight_hex_digits(field: bytes) -> None:
    data = bytearray(archive([("model", b"z" * 16)]))
    mode_field = 6 + 8 * 1  # the second header field is mode
    data[mode_field : mode_field + 8] = field
    with pytest.raises(ArchiveError, match="field mode is not hex"):
        entries(bytes(data))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_only_ever_raise_archive_error(blob: bytes) -> None:
    try:
        entries(blob)
    except ArchiveError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_archives_only_ever_raise_archive_error(data: st.DataObject) -> None:
    original = bytearray(archive([("sw-description", b"v = 1;"), ("m.tflite", b"\x07" * 40)]))
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(original) - 1))
        original[at] = data.draw(st.integers(0, 255))
    try:
        found = entries(bytes(original))
    except ArchiveError:
        return
    assert sum(len(v) for v in found.values()) <= len(original)

"""The SWUpdate container: a cpio "newc" archive of regular files, written and read with bounds.

No library on PyPI reads and writes newc without a C dependency (``libarchive-c`` needs
libarchive, which a lean device image does not carry), so this is a small, strict
implementation: only regular files, flat names (no folders, no ``..``, no links, no devices),
bounded entry count, name length and total size. Anything else is an :class:`ArchiveError`
naming the entry. The reader never trusts a header's size beyond the bytes left in the file.

Format (``man 5 cpio``): every entry is a 110-byte ASCII header (magic ``070701`` and thirteen
8-digit hex fields), the NUL-terminated name padded to a multiple of 4, then the data padded to a
multiple of 4; the archive ends with the entry ``TRAILER!!!``.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAGIC = b"070701"
HEX_FIELD = re.compile(rb"[0-9A-Fa-f]{8}")
HEADER_SIZE = 110
TRAILER = "TRAILER!!!"
#: Header fields after the magic, in order (each 8 hex digits).
FIELDS = (
    "ino",
    "mode",
    "uid",
    "gid",
    "nlink",
    "mtime",
    "filesize",
    "devmajor",
    "devminor",
    "rdevmajor",
    "rdevminor",
    "namesize",
    "check",
)
#: Flat file names only: what a bundle holds (model files, manifest, signature, frames).
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CHUNK = 1 << 16


class ArchiveError(ValueError):
    """The archive is malformed or breaks a bound; the message names the entry."""


@dataclass(frozen=True)
class Limits:
    """Bounds a reader enforces before it allocates or writes anything."""

    max_entries: int = 64
    max_name: int = 128
    max_total_bytes: int = 512 * 1024 * 1024


@dataclass(frozen=True)
class Entry:
    """One regular file of the archive: its name, size and where its data starts."""

    name: str
    size: int
    offset: int


def _pad(length: int) -> int:
    return (4 - length % 4) % 4


def _header(name: str, size: int, ino: int, mode: int) -> bytes:
    encoded = name.encode("ascii") + b"\0"
    values = dict.fromkeys(FIELDS, 0)
    values.update(ino=ino, mode=mode, nlink=1, filesize=size, namesize=len(encoded))
    header = MAGIC + b"".join(b"%08X" % values[field] for field in FIELDS)
    return header + encoded + b"\0" * _pad(HEADER_SIZE + len(encoded))


def check_name(name: str) -> None:
    """A bundle member name must be flat and plain: raises :class:`ArchiveError` otherwise."""
    if not NAME_PATTERN.match(name) or ".." in name:
        raise ArchiveError(f"entry {name[:80]!r}: not a plain file name (no folders, no '..')")


def write_archive(out: BinaryIO, members: list[tuple[str, Path | bytes]]) -> None:
    """Write ``members`` (name, file path or bytes) in order, then the trailer."""
    for ino, (name, content) in enumerate(members, start=1):
        check_name(name)
        if isinstance(content, bytes):
            size = len(content)
            out.write(_header(name, size, ino, stat.S_IFREG | 0o644))
            out.write(content)
        else:
            size = content.stat().st_size
            out.write(_header(name, size, ino, stat.S_IFREG | 0o644))
            with content.open("rb") as handle:
                for block in iter(lambda: handle.read(CHUNK), b""):
                    out.write(block)
        out.write(b"\0" * _pad(size))
    out.write(_header(TRAILER, 0, 0, 0))


def _parse_header(raw: bytes, where: int) -> dict[str, int]:
    if len(raw) < HEADER_SIZE:
        raise ArchiveError(f"truncated header at byte {where}")
    if raw[:6] != MAGIC:
        raise ArchiveError(f"bad magic {raw[:6]!r} at byte {where} (not a cpio newc archive)")
    values = {}
    for index, name in enumerate(FIELDS):
        field = raw[6 + 8 * index : 14 + 8 * index]
        # Eight hex digits only: int() would also take a sign, spaces or underscores, and a
        # negative mode or size is no number an archive can mean.
        if not HEX_FIELD.fullmatch(field):
            raise ArchiveError(f"header field {name} is not hex at byte {where}")
        values[name] = int(field, 16)
    return values


def read_entries(handle: BinaryIO, file_size: int, limits: Limits = Limits()) -> Iterator[Entry]:
    """The entries of an archive, in order, each checked against ``limits`` before it is yielded.

    The caller reads an entry's data at ``entry.offset`` (``entry.size`` bytes); the position of
    ``handle`` is moved by this generator.
    """
    position, total, seen = 0, 0, set()
    for count in range(limits.max_entries + 1):
        handle.seek(position)
        values = _parse_header(handle.read(HEADER_SIZE), position)
        name_size = values["namesize"]
        if not 1 < name_size <= limits.max_name + 1:
            raise ArchiveError(f"entry at byte {position}: name length {name_size} out of bounds")
        raw_name = handle.read(name_size)
        if len(raw_name) < name_size or raw_name[-1:] != b"\0":
            raise ArchiveError(f"entry at byte {position}: truncated or unterminated name")
        try:
            name = raw_name[:-1].decode("ascii")
        except UnicodeDecodeError:
            raise ArchiveError(f"entry at byte {position}: name is not ASCII") from None
        data_at = position + HEADER_SIZE + name_size + _pad(HEADER_SIZE + name_size)
        if name == TRAILER:
            return
        if count == limits.max_entries:
            raise ArchiveError(f"more than {limits.max_entries} entries")
        check_name(name)
        if not stat.S_ISREG(values["mode"]):
            raise ArchiveError(f"entry {name!r}: not a regular file (mode {values['mode']:o})")
        if values["nlink"] > 1:
            raise ArchiveError(f"entry {name!r}: hard link")
        if name in seen:
            raise ArchiveError(f"entry {name!r}: appears twice")
        seen.add(name)
        size = values["filesize"]
        total += size
        if total > limits.max_total_bytes:
            raise ArchiveError(
                f"entry {name!r}: archive content exceeds {limits.max_total_bytes} bytes"
            )
        if data_at + size > file_size:
            raise ArchiveError(f"entry {name!r}: truncated ({size} bytes declared)")
        yield Entry(name, size, data_at)
        position = data_at + size + _pad(size)
    raise ArchiveError("no trailer")  # pragma: no cover - the loop returns or raises first


def copy_entry(handle: BinaryIO, entry: Entry, out: BinaryIO) -> None:
    """Copy the data of ``entry`` from the archive into ``out``."""
    handle.seek(entry.offset)
    left = entry.size
    while left:
        block = handle.read(min(CHUNK, left))
        if not block:
            raise ArchiveError(f"entry {entry.name!r}: truncated")
        out.write(block)
        left -= len(block)


def read_entry(handle: BinaryIO, entry: Entry) -> bytes:
    """The data of a small entry (manifest, signature) in memory."""
    handle.seek(entry.offset)
    data = handle.read(entry.size)
    if len(data) != entry.size:
        raise ArchiveError(f"entry {entry.name!r}: truncated")
    return data

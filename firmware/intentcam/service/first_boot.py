"""First boot without a keyboard: the config an installer put on the SD card's boot partition.

Raspberry Pi OS Bookworm images have no cloud-init; the installer writes ``intentcam.toml`` onto
the FAT boot partition from any laptop. At first boot ``intentcam-firstboot.service`` runs
``intentcam import-config``: the file is validated like any config, moved to
``/etc/intentcam/intentcam.toml`` (mode 0600, owned by the daemon's user: it may hold the broker
password) and removed from the FAT partition, where a note without secrets says where it went.
An invalid file stays where it is, and a note beside it gives the problems, so the installer sees
them on the card in the laptop.
"""

from __future__ import annotations

import os
import pwd
import time
from dataclasses import dataclass
from pathlib import Path

from intentcam.config import load_config
from intentcam.durable import atomic_write
from intentcam.errors import ConfigError, UserError

IMPORTED_NOTE = "intentcam-imported.txt"
ERROR_NOTE = "intentcam-import-error.txt"


@dataclass(frozen=True)
class Imported:
    source: Path
    target: Path
    device: str
    site: str


def import_config(source: Path, dest_dir: Path, owner: str = "intentcam") -> Imported:
    """Validate ``source``, move it to ``dest_dir/intentcam.toml`` (0600), leave a note.

    Raises :class:`UserError` (after writing the error note beside ``source``) if it is invalid.
    """
    note_dir = source.parent
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise UserError(f"{source}: cannot read ({exc.strerror or exc})") from None
    try:
        settings = load_config(source)
    except ConfigError as exc:
        _note(note_dir / ERROR_NOTE, [f"{source.name} was NOT imported:", *exc.problems])
        raise
    target = dest_dir / "intentcam.toml"
    atomic_write(target, data)
    os.chmod(target, 0o600)
    try:
        account = pwd.getpwnam(owner)
        os.chown(target, account.pw_uid, account.pw_gid)
    except KeyError:
        pass  # no daemon user (yet): root keeps it, install.sh creates the user
    # FAT has no secure erase: overwrite the bytes before the name goes, then say where it went.
    with source.open("r+b") as handle:
        handle.write(b"\0" * len(data))
        handle.flush()
        os.fsync(handle.fileno())
    source.unlink()
    (note_dir / ERROR_NOTE).unlink(missing_ok=True)
    _note(note_dir / IMPORTED_NOTE, [
        f"{source.name} imported to {target} at {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"device {settings.device.id}, site {settings.device.site}",
        "It was removed from this partition; edit the copy on the device.",
    ])  # fmt: skip
    return Imported(source, target, settings.device.id, settings.device.site)


def _note(path: Path, lines: list[str]) -> None:
    try:
        path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")  # read on Windows too
    except OSError:
        pass  # a read-only card: the journal has the same lines

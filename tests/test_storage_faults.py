"""Storage faults degrade, never crash: a corrupt spool is set aside, seq never goes back, a full
or read-only filesystem holds messages in memory until it recovers, and a wall-clock jump does not
expire unsent messages. Faults are real: a small tmpfs filled up or remounted read-only."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from intentcam.telemetry.spool import SEQ_BLOCK, Spool, SpoolClock


def put(spool: Spool, count: int, size: int = 100) -> list[int]:
    return [spool.put("t", 1, lambda seq: b"x" * size) for _ in range(count)]


def test_a_corrupt_spool_is_moved_aside_and_seq_continues(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    spool = Spool(path)
    issued = put(spool, 5)
    spool.close()
    path.write_bytes(b"this is not a database" * 100)
    (tmp_path / "spool.sqlite-wal").unlink(missing_ok=True)
    reopened = Spool(path)
    assert list(tmp_path.glob("spool.sqlite.corrupt-*"))
    nxt = put(reopened, 1)[0]
    assert nxt > max(issued), "a new spool must not reuse seqs the gateway has seen"


def test_a_rewound_counter_is_detected(tmp_path: Path, caplog: Any) -> None:
    path = tmp_path / "spool.sqlite"
    spool = Spool(path)
    issued = put(spool, 3)
    for seq in issued:
        spool.ack(seq)
    spool.close()
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM meta WHERE key = 'next_seq'")
    assert put(Spool(path), 1)[0] > max(issued)
    assert "its counter went back" in caplog.text


def test_the_high_water_mark_costs_one_write_per_block(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    put(spool, 3)
    assert int(spool.hwm_path.read_text().split()[0]) == SEQ_BLOCK
    spool.close()
    assert put(Spool(tmp_path / "spool.sqlite"), 1) == [4]  # an intact spool: no gap


def test_age_is_not_wall_clock(tmp_path: Path, monkeypatch: Any) -> None:
    ticks = [0.0]
    clock = SpoolClock(500.0, monotonic=lambda: ticks[0])
    ticks[0] = 30.0
    assert clock() == 530.0
    spool = Spool(tmp_path / "spool.sqlite", max_age_s=3600)
    put(spool, 3)
    real = time.time()
    monkeypatch.setattr(time, "time", lambda: real + 10 * 86400)  # NTP after ten days offline
    put(spool, 1)
    assert spool.stats()["depth"] == 4 and spool.stats()["dropped"] == 0


@pytest.fixture()
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "state"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_holds_messages_in_memory_until_space_returns(small_fs: Path) -> None:
    spool = Spool(small_fs / "spool.sqlite")
    first = put(spool, 5)
    filler = small_fs / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    held = put(spool, 20, size=4096)
    assert spool.fault and "cannot write" in spool.fault
    assert [m.seq for m in spool.pending(limit=100)] == first + held
    filler.unlink()
    after = put(spool, 1)
    assert spool.fault == ""
    spool.close()
    reopened = Spool(small_fs / "spool.sqlite")
    assert [m.seq for m in reopened.pending(limit=100)] == first + held + after


@pytest.mark.slow
def test_a_read_only_state_dir_runs_degraded_instead_of_crash_looping(
    small_fs: Path, tmp_path: Path, model_dir: Path
) -> None:
    from tests.cli import run_cli
    from tests.data import CONCOURSE

    env = {
        "INTENTCAM_PATHS__STATE_DIR": str(small_fs),
        "INTENTCAM_PATHS__MODEL_DIR": str(model_dir),
        "INTENTCAM_ANALYTICS__WINDOW_S": "1",
    }
    before = tmp_path / "before.jsonl"
    first = run_cli("run", "--source", str(CONCOURSE), "--max-frames", "30", "--sink",
                    f"jsonl:{before}", env=env)  # fmt: skip
    assert first.returncode == 0, first.stderr
    # An SD card fault: the state filesystem turns read-only (no writer holds it now).
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    after = tmp_path / "after.jsonl"
    second = run_cli("run", "--source", str(CONCOURSE), "--max-frames", "30", "--sink",
                     f"jsonl:{after}", env=env)  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert "holding messages in memory" in second.stderr and "Traceback" not in second.stderr
    import json

    def seqs(path: Path) -> list[int]:
        lines = path.read_text().splitlines()
        return [r["seq"] for r in map(json.loads, lines) if r.get("type") in ("counts", "heatmap")]

    assert seqs(after) and min(seqs(after)) > max(seqs(before)), "seq must not go back"

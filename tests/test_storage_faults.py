"""Storage faults degrade, never crash: a corrupt spool is set aside, seq never goes back, a full
or read-only filesystem holds messages in memory until it recovers, and a wall-clock jump does not
expire unsent messages. Faults are real: a small tmpfs filled up or remounted read-only, and a
loop-mounted ext4 (``errors=remount-ro``, as Raspberry Pi OS mounts its root) failing mid-run:
either turned read-only by a filesystem error (``trigger_fs_error``, what ext4 does on an SD card
fault) or shut down (``EXT4_IOC_SHUTDOWN``, the ioctl xfstests' ``godown`` uses: every later I/O
fails), then checked and mounted again."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from intentcam.telemetry.spool import SEQ_BLOCK, Spool, SpoolClock
from tests.waiting import wait_until


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
    with filler.open("wb", buffering=0) as handle:  # unbuffered: close has nothing to fail on
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
    assert "unsent message(s) held in memory are lost at this stop" in second.stderr
    import json

    def seqs(path: Path) -> list[int]:
        lines = path.read_text().splitlines()
        return [r["seq"] for r in map(json.loads, lines) if r.get("type") in ("counts", "heatmap")]

    assert seqs(after) and min(seqs(after)) > max(seqs(before)), "seq must not go back"


#: ``_IOR('X', 125, __u32)``; flag 2 = ``EXT4_GOING_FLAGS_NOLOGFLUSH`` (drop the journal's tail).
EXT4_IOC_SHUTDOWN = 0x8004587D


class Ext4:
    """An ext4 image loop-mounted at ``mount``, which a test can shut down and mount again."""

    def __init__(self, image: Path, mount: Path) -> None:
        self.image, self.mount = image, mount
        self.devices: list[str] = []

    def attach(self) -> None:
        """Mount through a loop device of its own: ``mount -o loop`` would reuse the device of a
        detached mount, and with it the old (shut down) filesystem."""
        device = subprocess.run(["losetup", "-f", "--show", str(self.image)], capture_output=True,
                                text=True, check=True).stdout.strip()  # fmt: skip
        self.devices.append(device)
        subprocess.run(["mount", "-o", "errors=remount-ro", device, str(self.mount)], check=True)

    def fail(self, how: str) -> None:
        """``read_only``: a filesystem error, which remounts it read-only; ``io_error``: shut
        down, every later read or write fails with EIO."""
        if how == "read_only":
            name = Path(self.devices[-1]).name
            Path(f"/sys/fs/ext4/{name}/trigger_fs_error").write_text("injected by a test")
            options = [line.split()[3] for line in Path("/proc/mounts").read_text().splitlines()
                       if line.split()[1] == str(self.mount)]  # fmt: skip
            assert options and ("emergency_ro" in options[-1] or options[-1].startswith("ro"))
        else:
            self.shut_down()

    def detach(self) -> None:
        subprocess.run(["umount", "-l", str(self.mount)], check=False)
        for device in self.devices:  # freed once nothing holds the old filesystem any more
            subprocess.run(["losetup", "-d", device], check=False, capture_output=True)

    def shut_down(self) -> None:
        """Every later read or write on the filesystem fails with EIO."""
        fd = os.open(self.mount, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, (2).to_bytes(4, "little"))
        finally:
            os.close(fd)

    def repair(self) -> None:
        """What a technician (or the next boot) does: detach, fsck, mount again."""
        subprocess.run(["umount", "-l", str(self.mount)], check=True)
        subprocess.run(["e2fsck", "-fy", str(self.image)], capture_output=True)  # 1: fixed
        self.attach()


@pytest.fixture()
def ext4(tmp_path: Path) -> Iterator[Ext4]:
    image, mount = tmp_path / "sd.img", tmp_path / "sd"
    mount.mkdir()
    subprocess.run(["truncate", "-s", "32M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    fs = Ext4(image, mount)
    try:
        fs.attach()
    except subprocess.CalledProcessError:
        pytest.skip("cannot loop-mount an ext4 image here (needs root and loop devices)")
    try:
        yield fs
    finally:
        fs.detach()


FAULTS = pytest.mark.parametrize("fault", ["read_only", "io_error"])


@FAULTS
def test_a_filesystem_failing_mid_run_holds_messages_until_it_is_back(
    ext4: Ext4, fault: str
) -> None:
    spool = Spool(ext4.mount / "spool.sqlite", retry_s=0.1)
    before = put(spool, 5)
    ext4.fail(fault)
    during = put(spool, 20)
    assert "cannot write" in spool.fault
    assert [m.seq for m in spool.pending(limit=100)][-20:] == during  # held, in order
    assert spool.stats()["depth"] >= 20  # health keeps reporting from memory
    ext4.repair()
    time.sleep(0.2)
    after = put(spool, 1)  # the old connection sees a dead filesystem: the spool opens afresh
    assert spool.fault == ""
    spool.close()
    reopened = Spool(ext4.mount / "spool.sqlite")
    assert [m.seq for m in reopened.pending(limit=100)] == before + during + after


def test_the_spool_never_opens_again_on_the_bare_mount_point(ext4: Ext4) -> None:
    """Between the filesystem going away and coming back, the mount point is an empty folder of
    the root filesystem: a spool opened there would be hidden by the next mount (found by CI: a
    slow e2fsck left time for it, and five held messages vanished under the remount)."""
    spool = Spool(ext4.mount / "spool.sqlite", retry_s=0.05)
    before = put(spool, 3)
    ext4.shut_down()
    during = put(spool, 3)
    subprocess.run(["umount", "-l", str(ext4.mount)], check=True)  # unmounted, not yet back
    time.sleep(0.1)
    during += put(spool, 3)
    assert "cannot write" in spool.fault
    assert not (ext4.mount / "spool.sqlite").exists(), "opened on the bare mount point"
    subprocess.run(["e2fsck", "-fy", str(ext4.image)], capture_output=True)
    ext4.attach()
    time.sleep(0.1)
    after = put(spool, 1)
    assert spool.fault == ""
    spool.close()
    reopened = Spool(ext4.mount / "spool.sqlite")
    assert [m.seq for m in reopened.pending(limit=100)] == before + during + after


def test_a_spool_started_in_memory_moves_to_disk_when_the_filesystem_is_writable(
    small_fs: Path,
) -> None:
    Spool(small_fs / "spool.sqlite").close()
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    spool = Spool(small_fs / "spool.sqlite", retry_s=0.1)
    held = put(spool, 10)
    assert "holding messages in memory" in spool.fault
    subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
    time.sleep(0.2)
    after = put(spool, 1)
    assert spool.fault == ""
    spool.close()
    assert [m.seq for m in Spool(small_fs / "spool.sqlite").pending()] == held + after


@pytest.mark.slow
@FAULTS
def test_the_daemon_rides_out_a_failing_sd_card_and_check_says_why(
    ext4: Ext4, tmp_path: Path, model_dir: Path, fault: str
) -> None:
    from intentcam.telemetry.health import read_health_file
    from tests.cli import intentcam_argv, run_cli
    from tests.data import MALL

    runtime = tmp_path / "run"
    config = tmp_path / "camera.toml"
    config.write_text(
        f'[paths]\nstate_dir = "{ext4.mount}"\nmodel_dir = "{model_dir}"\n'
        f'runtime_dir = "{runtime}"\n[camera]\nsource = "{MALL}"\n'
        "[telemetry]\nhealth_interval_s = 1\n[spool]\nretry_s = 1\n"
        "[analytics]\nwindow_s = 1\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTENTCAM_")}
    daemon = subprocess.Popen(
        intentcam_argv("run", "--config", str(config), "--realtime", "--sink", f"jsonl:{out}"),
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )

    def alive() -> bool:
        assert daemon.poll() is None, "the daemon died"
        return True

    def reports(state: str) -> bool:
        report = read_health_file(runtime)
        return report is not None and report.state == state and report.age_s() < 1.5

    def wait_for(state: str) -> None:
        assert wait_until(lambda: alive() and reports(state), 90, 0.3), f"no {state} health report"

    def published() -> list[int]:
        """The seqs of the counts in the sink so far (a line still being written left out)."""
        lines = out.read_text().split("\n")[:-1] if out.exists() else []
        return [r["seq"] for r in map(json.loads, lines) if r["type"] == "counts"]

    def wait_for_a_window() -> None:
        """Until one more counts window closes."""
        seen = len(published())
        closed = wait_until(lambda: alive() and len(published()) > seen, 90, 0.3)
        assert closed, "no counts window in 90 s"

    try:
        wait_for("online")
        ext4.fail(fault)
        wait_for("degraded")
        wait_for_a_window()  # closed while the disk refuses: held in memory
        check = run_cli("check", "--config", str(config), "--json")
        assert check.stdout, check.stderr
        steps = {step["name"]: step for step in json.loads(check.stdout)["steps"]}
        assert check.returncode == 1
        assert steps["daemon"]["state"] == "fail"
        assert "spool cannot write" in steps["daemon"]["detail"]
        ext4.repair()
        wait_for("online")
        wait_for_a_window()  # and one after the repair
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, stderr
    assert "Traceback" not in stderr and "opened again after the fault" in stderr
    spooled = [m.seq for m in Spool(ext4.mount / "spool.sqlite").pending(limit=100000)]
    lost = sorted(set(published()) - set(spooled))
    assert published() and not lost, f"counts lost across the fault: {lost}"

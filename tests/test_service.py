"""Running as a systemd service: unit file, sd_notify and watchdog, SIGTERM, journald, check."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from intentcam.service.notify import Notifier, socket_sender, watchdog_interval
from tests.brokers import free_port
from tests.cli import intentcam_argv, run_cli
from tests.data import CAVIAR, ROOT, SHELF_CLIPS
from tests.test_capture import ClipServer
from tests.waiting import wait_until

ENV = {k: v for k, v in os.environ.items() if not k.startswith("INTENTCAM_")}


def test_first_boot_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze
    executable = Path(sys.executable).parent / "intentcam"
    text = (ROOT / "systemd" / "intentcam-firstboot.service").read_text()
    assert "Before=intentcam.service" in text and "import-config" in text
    unit = tmp_path / "intentcam-firstboot.service"
    unit.write_text(text.replace("/opt/intentcam/venv/bin/intentcam", str(executable)))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_unit_file_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "the systemd package provides systemd-analyze (make setup installs it)"
    unit = tmp_path / "intentcam.service"
    executable = Path(sys.executable).parent / "intentcam"
    text = (ROOT / "systemd" / "intentcam.service").read_text()
    assert "/opt/intentcam/venv/bin/intentcam" in text
    unit.write_text(text.replace("/opt/intentcam/venv/bin/intentcam", str(executable)))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for setting in (
        "Type=notify",
        "WatchdogSec=30",
        "Restart=on-failure",
        "StateDirectory=intentcam",
        "ConfigurationDirectory=intentcam",
        "SupplementaryGroups=video",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "MemoryMax=",
        "CPUWeight=",
        "StartLimitBurst=",
    ):
        assert setting in text, setting
    security = subprocess.run(
        [analyze, "security", "--offline=yes", str(unit)], capture_output=True, text=True
    )
    if "unrecognized option" in security.stderr:  # systemd < 250 cannot score offline
        return
    score = float(
        security.stdout.split("Overall exposure level for intentcam.service:")[1].split()[0]
    )
    assert score <= 2.5, security.stdout[-2000:]


class NotifySocket:
    """A bound unix datagram socket collecting what the daemon tells systemd."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def lines(self, prefix: str, since: float = 0.0) -> list[str]:
        return [line for at, line in self.messages if line.startswith(prefix) and at >= since]

    def wait_for(self, prefix: str, timeout: float = 60.0, count: int = 1) -> bool:
        """Whether ``count`` messages starting with ``prefix`` arrived within ``timeout``."""
        return wait_until(lambda: len(self.lines(prefix)) >= count, timeout)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def test_socket_sender_speaks_the_notify_protocol(tmp_path: Path) -> None:
    receiver = NotifySocket(tmp_path)
    try:
        assert socket_sender(str(receiver.path))("READY=1\nSTATUS=hello")
        assert receiver.wait_for("STATUS=hello", timeout=5)
        assert receiver.lines("READY=1")
    finally:
        receiver.close()
    assert not socket_sender(str(tmp_path / "missing.sock"))("READY=1")


def test_watchdog_pings_only_when_the_loop_progressed() -> None:
    sent: list[str] = []
    now = [0.0]
    notifier = Notifier(
        lambda state: sent.append(state) or True, watchdog_s=1.0, clock=lambda: now[0]
    )
    progress = 0.0
    for step in range(10):  # frames flow: a ping every second
        now[0] = step * 0.5
        progress = now[0]
        notifier.tick(progress, lambda: "ok")
    pings = sent.count("WATCHDOG=1")
    assert pings == 5
    for step in range(10, 30):  # the camera stalls: progress stands still
        now[0] = step * 0.5
        notifier.tick(progress, lambda: "stalled")
    # One last ping for the frame processed just before the stall, then silence for 9.5 s.
    assert sent.count("WATCHDOG=1") == pings + 1
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({}) is None


def test_outside_systemd_nothing_is_sent() -> None:
    notifier = Notifier(None, None)
    notifier.notify_ready("x")
    notifier.tick(1.0, lambda: "x")
    notifier.stopping()
    assert not notifier.active


@pytest.mark.slow
def test_daemon_under_a_systemd_like_supervisor(tmp_path: Path, model_dir: Path) -> None:
    """READY, STATUS and WATCHDOG while frames flow; while the camera is gone the loop keeps
    reconnecting, closing empty windows marked with the camera's state and feeding the watchdog
    (only a hung loop or inference should get it killed); STOPPING, exit 0 on SIGTERM."""
    import shutil as _shutil

    _shutil.copy(CAVIAR / "video.mpg", tmp_path / "clip.mpg")
    server = ClipServer(tmp_path)
    server.start()
    receiver = NotifySocket(tmp_path)
    out = tmp_path / "out.jsonl"
    config = tmp_path / "c.toml"
    config.write_text(
        f"""
[camera]
source = "http://127.0.0.1:{server.port}/clip.mpg"
fps_cap = 20
reconnect_max_s = 0.5
[analytics]
window_s = 1
[paths]
model_dir = "{model_dir}"
state_dir = "{tmp_path / "state"}"
""",
        encoding="utf-8",
    )
    env = dict(ENV, NOTIFY_SOCKET=str(receiver.path), WATCHDOG_USEC="1000000")
    daemon = subprocess.Popen(
        intentcam_argv("run", "--config", str(config), "--sink", f"jsonl:{out}"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.wait_for("READY=1", timeout=90)
        # The daemon pings every half watchdog period: counted as they come rather than after a
        # fixed sleep, so a stalled test machine does not decide the test.
        assert receiver.wait_for("WATCHDOG=1", timeout=30, count=3)
        assert receiver.wait_for("STATUS=", timeout=10)
        status = receiver.lines("STATUS=")[-1]
        assert re.search(r"fps, \d+ (person|people) in view, broker not configured", status)
        server.stop()  # the camera goes away
        time.sleep(2.5)  # frames in flight drain; the source is reconnecting
        away_since = time.monotonic()
        time.sleep(3)
        assert receiver.lines("WATCHDOG=1", since=away_since)
        assert "camera reconnecting" in receiver.lines("STATUS=")[-1]
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=60)
    finally:
        daemon.kill()
        receiver.close()
    assert daemon.returncode == 0, stderr
    assert receiver.lines("STOPPING=1")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    counts = [r for r in records if r["type"] == "counts"]
    assert any(c["frames"] > 0 for c in counts)
    empty = [c for c in counts if c["frames"] == 0]
    assert any(c.get("source") == "reconnecting" for c in empty), empty
    assert records[-1]["type"] == "summary"


def _log_once(native: bool, under_journal: bool) -> subprocess.CompletedProcess[str]:
    journal = (
        "st = os.fstat(2)\nos.environ['JOURNAL_STREAM'] = f'{st.st_dev}:{st.st_ino}'\n"
        if under_journal
        else ""
    )
    script = (
        "import os, logging\n" + journal + "from intentcam.service.logs import configure\n"
        f"print(configure('INFO', native_journal={native}))\n"
        "logging.getLogger('intentcam.x').warning('careful')\n"
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV)


def test_journald_stderr_carries_priorities() -> None:
    """Under systemd (JOURNAL_STREAM names stderr) log lines carry <priority> prefixes."""
    prefixed = _log_once(native=False, under_journal=True)
    assert prefixed.stdout.strip() == "journal-stderr"
    assert "<4>intentcam.x: careful" in prefixed.stderr
    plain = _log_once(native=True, under_journal=False)
    assert plain.stdout.strip() == "stderr" and "WARNING intentcam.x: careful" in plain.stderr


def test_native_journal_handler_when_systemd_python_is_installed() -> None:
    try:
        import systemd.journal  # noqa: F401
    except ImportError:
        pytest.skip("systemd-python (the 'systemd' extra) is not installed")
    native = _log_once(native=True, under_journal=True)
    assert native.stdout.strip() == "journald"
    assert "careful" not in native.stderr  # it went to the journal socket, not stderr


@pytest.fixture()
def check_config(tmp_path: Path, model_dir: Path):
    def write(model_folder: Path, source: str, broker_port: int | None) -> Path:
        mqtt = f'[mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\n' if broker_port else ""
        path = tmp_path / "check.toml"
        path.write_text(
            f'[camera]\nsource = "{source}"\n[paths]\nmodel_dir = "{model_folder}"\n'
            f'state_dir = "{tmp_path / "state"}"\n{mqtt}',
            encoding="utf-8",
        )
        return path

    return write


def test_check_passes_on_a_working_setup(check_config, model_dir: Path) -> None:
    config = check_config(model_dir, str(CAVIAR / "video.mpg"), None)
    result = run_cli("check", "--config", str(config), "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["ok"]
    states = {s["name"]: s["state"] for s in report["steps"]}
    assert states.pop("clock") in ("pass", "warn", "skip")  # this machine's NTP state
    assert states == {"config": "pass", "geometry": "pass", "daemon": "skip", "models": "pass",
                      "detector": "pass", "camera": "pass", "detection": "pass",
                      "broker": "skip"}  # fmt: skip


def test_check_says_how_many_people_it_sees_in_words(check_config, model_dir: Path) -> None:
    """The installer reads this line while standing in front of the camera: one shopper at the
    table is "1 person", the four in the CAVIAR corridor "4 people"."""
    from intentcam.service.check import Check

    found = {}
    for name, source in (("shelf", SHELF_CLIPS / "set-a-normal-6.mp4"),
                         ("corridor", CAVIAR / "video.mpg")):  # fmt: skip
        steps = {
            step.name: step for step in Check(check_config(model_dir, str(source), None), {}).run()
        }
        found[name] = steps["detection"].detail.split(" (")[0]
    assert found == {"shelf": "1 person in the frame", "corridor": "4 people in the frame"}


def test_check_says_whose_geometry_counts_and_whether_the_clock_is_synchronised(
    tmp_path: Path,
) -> None:
    from intentcam.config import LineConfig, load_config
    from intentcam.control.geometry_store import Geometry, GeometryStore
    from intentcam.service.check import TIME_ERROR, clock_step, geometry_step

    settings = load_config(None, overrides={"paths": {"state_dir": str(tmp_path)},
                                            "lines": [{"id": "door", "points": [[0, 0.5], [1, 0.5]]}]})  # fmt: skip
    step = geometry_step(settings, "camera.toml")
    assert step.state == "pass" and "camera.toml: door" in step.detail
    live = Geometry(lines=[LineConfig(id="mqtt_door", points=[(0, 0.6), (1, 0.6)])], zones=[])
    GeometryStore(tmp_path).save(live)
    step = geometry_step(settings, "camera.toml")
    assert step.state == "warn" and "override camera.toml: mqtt_door" in step.detail
    assert clock_step(TIME_ERROR).state == "warn" and "NTP" in clock_step(TIME_ERROR).detail
    assert clock_step(0).state == "pass" and clock_step(None).state == "skip"


def test_check_tiles_as_the_daemon_would_for_the_zones_it_counts_with(tmp_path: Path) -> None:
    """A shelf zone, from the config or set live, makes the daemon run ``auto`` untiled."""
    from intentcam.config import ZoneConfig, load_config
    from intentcam.control.geometry_store import Geometry, GeometryStore
    from intentcam.service.check import watches_shelves

    table = {"id": "table", "kind": "shelf", "points": [[0.2, 0.5], [0.8, 0.5], [0.8, 0.9]]}
    state = {"paths": {"state_dir": str(tmp_path)}}
    assert not watches_shelves(load_config(None, overrides=state))
    assert watches_shelves(load_config(None, overrides={**state, "zones": [table]}))
    GeometryStore(tmp_path).save(Geometry(lines=[], zones=[ZoneConfig.model_validate(table)]))
    assert watches_shelves(load_config(None, overrides=state))


def test_check_verifies_the_models_the_camera_view_will_load(
    tmp_path: Path, model_dir: Path
) -> None:
    """A shelf zone needs MoveNet, expression inference the face and expression models: a
    missing one fails the models step at install time, naming it and why, not the daemon's
    start; the detector's own steps still run."""
    from intentcam.config import load_config
    from intentcam.models import load_manifest
    from intentcam.service.check import Check, _view_models, view_models

    table = {"id": "table", "kind": "shelf", "points": [[0.2, 0.5], [0.8, 0.5], [0.8, 0.9]]}
    state = {"paths": {"state_dir": str(tmp_path / "state"), "model_dir": str(model_dir)}}
    assert view_models(load_config(None, overrides=state)) == []
    shelves = load_config(None, overrides={**state, "zones": [table]})
    assert view_models(shelves) == [("movenet_lightning", "shelf zones")]
    lawful = {"expression_inference": True, "shopper_notice": "sign at the entrance"}
    faces = load_config(None, overrides={**state, "privacy": lawful})
    assert [why for _, why in view_models(faces)] == ["expression inference"] * 2
    state_, detail = _view_models(shelves, load_manifest(shelves.paths.manifest), "detector ok")
    assert state_ == "pass" and detail.startswith("detector ok; movenet_lightning ")
    no_pose = tmp_path / "models"
    no_pose.mkdir()
    for model in model_dir.iterdir():
        if not model.name.startswith("movenet"):
            (no_pose / model.name).symlink_to(model)
    config = tmp_path / "check.toml"
    config.write_text(
        f'[camera]\nsource = "{CAVIAR / "video.mpg"}"\n[paths]\nmodel_dir = "{no_pose}"\n'
        f'state_dir = "{tmp_path / "state"}"\n[[zones]]\nid = "table"\nkind = "shelf"\n'
        "points = [[0.2, 0.5], [0.8, 0.5], [0.8, 0.9]]\n",
        encoding="utf-8",
    )
    steps = {step.name: step for step in Check(config, {}).run()}
    assert steps["models"].state == "fail"
    assert "movenet" in steps["models"].detail
    assert "needed for shelf zones; the daemon counts on without it" in steps["models"].detail
    assert steps["detector"].state == "pass" and steps["detection"].state == "pass"


def test_check_judges_a_running_daemon_by_its_health_report() -> None:
    from intentcam.service.check import daemon_step
    from intentcam.telemetry.health import HealthReport

    health = {"fps": 9.5, "uptime_s": 120, "broker": "connected", "spool": {"depth": 0},
              "source": {"state": "streaming"}}  # fmt: skip
    well = HealthReport(written=1000.0, pid=7, state="online", reason="", health=health)
    assert daemon_step(well, 30, now=1010.0).state == "pass"
    stale = daemon_step(well, 30, now=1200.0)
    assert stale.state == "fail" and "200 s old" in stale.detail
    broken = HealthReport(
        written=1000.0, pid=7, state="degraded", reason="spool cannot write: disk I/O error",
        health={**health, "broker": "disconnected", "spool": {"depth": 41},
                "broker_error": "not authorised (check mqtt.username)",
                "source": {"state": "reconnecting"}},
    )  # fmt: skip
    step = daemon_step(broken, 30, now=1001.0)
    assert step.state == "fail"
    for expected in ("disk I/O error", "not authorised", "41 message(s)", "camera reconnecting"):
        assert expected in step.detail
    # Alerts the broker never got: said, but a past outage alone does not fail the check.
    missed = HealthReport(written=1000.0, pid=7, state="online", reason="",
                          health={**health, "alerts": {"fired": 5, "expired": 2}})  # fmt: skip
    step = daemon_step(missed, 30, now=1010.0)
    assert step.state == "pass" and "2 of 5 staff alert(s) dropped undelivered" in step.detail


@pytest.mark.slow
def test_check_reports_each_failure_as_its_own_step(check_config, tmp_path: Path) -> None:
    empty = tmp_path / "no-models"
    empty.mkdir()
    config = check_config(empty, "/dev/video97", free_port())
    result = run_cli("check", "--config", str(config), "--json", "--camera-timeout", "2")
    assert result.returncode == 1
    steps = {s["name"]: s for s in json.loads(result.stdout)["steps"]}
    assert steps["config"]["state"] == "pass"
    assert steps["models"]["state"] == "fail" and "not installed" in steps["models"]["detail"]
    assert steps["camera"]["state"] == "fail" and "/dev/video97" in steps["camera"]["detail"]
    assert steps["broker"]["state"] == "fail" and "refused" in steps["broker"]["detail"]
    assert steps["detection"]["state"] == "skip"
    human = run_cli("check", "--config", str(config), "--camera-timeout", "2")
    assert "FAIL  models" in human.stdout and "FAIL  camera" in human.stdout
    assert "FAIL  broker" in human.stdout and "Traceback" not in human.stderr


@pytest.mark.slow
def test_walk_test_reports_each_crossing_as_it_happens(tmp_path: Path, model_dir: Path) -> None:
    """CAVIAR OneLeaveShop1cor: someone leaves the shop on the left (ground truth: one ``out``
    across ``shop_exit`` within the first 11 s); the walk test prints it, token-free."""
    config = tmp_path / "camera.toml"
    config.write_text(
        f'[paths]\nstate_dir = "{tmp_path / "state"}"\nmodel_dir = "{model_dir}"\n'
        f'[camera]\nsource = "{CAVIAR / "video.mpg"}"\n'
        '[[lines]]\nid = "shop_exit"\npoints = [[0.25, 0.30], [0.25, 0.80]]\n',
        encoding="utf-8",
    )
    human = run_cli("check", "--config", str(config), "--walk", "12")
    assert human.returncode == 0, human.stderr
    assert "line shop_exit: out" in human.stdout
    assert "walk test:" in human.stdout and "shop_exit in 0 out 1" in human.stdout
    assert "tok" not in human.stdout.lower()  # no session token is ever shown
    machine = run_cli("check", "--config", str(config), "--walk", "12", "--json")
    walk = json.loads(machine.stdout)["walk"]
    assert walk["lines"]["shop_exit"] == {"in": 0, "out": 1}
    assert [e["kind"] for e in walk["events"]] == ["line"] and walk["geometry"] == "config"


@pytest.mark.slow
def test_walk_test_reports_reaches_and_alerts_at_a_shelf(tmp_path: Path, model_dir: Path) -> None:
    """set-a-normal-6: a shopper at the table reaches twice (hand labels: frames 0-13 and 51-89)
    and lingers; the walk test prints each reach as it ends and the shelf_help alert it raises,
    token-free, and keeps the alert to itself while the rule is in its quiet hours."""
    from datetime import datetime, timedelta, timezone

    rule = (
        '[[alerts.rules]]\nid = "help"\nkind = "shelf_help"\nzones = ["table"]\n'
        'staff_zone = "counter"\nlinger_s = 5\nmin_reaches = 2\n'
    )
    config = tmp_path / "camera.toml"
    text = (
        f'[paths]\nstate_dir = "{tmp_path / "state"}"\nmodel_dir = "{model_dir}"\n'
        f'[analytics]\ntimezone = "UTC"\n[camera]\nsource = "{SHELF_CLIPS / "set-a-normal-6.mp4"}"\n'
        '[[zones]]\nid = "table"\nkind = "shelf"\n'
        "points = [[0.43, 0.45], [0.62, 0.4], [0.84, 0.86], [0.46, 0.95]]\n"
        '[[zones]]\nid = "counter"\nkind = "staff"\n'
        "points = [[0.0, 0.0], [0.1, 0.0], [0.1, 0.1], [0.0, 0.1]]\n"
    )
    config.write_text(text + rule, encoding="utf-8")
    human = run_cli("check", "--config", str(config), "--walk", "60")
    assert human.returncode == 0, human.stderr
    assert human.stdout.count("shelf table: reach") == 2, human.stdout
    assert "alert help at table: a shopper has been at table for" in human.stdout
    assert "shelves: table reach 2, inspect 0, put-back 0" in human.stdout
    assert "alerts: table 1 (rules on: help)" in human.stdout
    assert "tok" not in human.stdout.lower()
    now = datetime.now(timezone.utc)
    quiet = f"{(now - timedelta(hours=1)):%H:%M}-{(now + timedelta(hours=1)):%H:%M}"
    config.write_text(text + rule + f'quiet_hours = "{quiet}"\n', encoding="utf-8")
    machine = run_cli("check", "--config", str(config), "--walk", "60", "--json")
    walk = json.loads(machine.stdout)["walk"]
    assert walk["shelves"]["table"]["reach"] == 2 and walk["alerts"] == {}
    assert walk["rules"] == ["help"] and walk["quiet_rules"] == ["help"]
    assert {e["kind"] for e in walk["events"]} == {"zone", "shelf"}

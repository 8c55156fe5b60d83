"""The OTA agent between two frames, driven tick by tick: a new model that raises during probation
is swapped out at once, a second request while one runs is refused, a corrupt state file is set
aside. The frame loop is played by this test (its heartbeat and swap callbacks)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from intentcam.config import Settings
from intentcam.ota.agent import GuardedDetector, LoopCount, OtaAgent
from intentcam.ota.download import Download
from intentcam.ota.install import Installer, store_of
from tests.ota_kit import LOAD_PROOF_FPS_RATIO

pytestmark = pytest.mark.slow


class RaisingDetector:
    """A new model that loads and passes its self-test but fails on the camera's frames."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def detect(self, image: Any, min_score: float | None = None, near: bool = False) -> Any:
        raise RuntimeError("tensor arena exhausted")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class SlowDetector:
    """A new model that works but takes ``factor`` times as long per frame as the one it replaces,
    and at least half a second more (it waits out the rest): a ratio, so the test holds however
    loaded the machine is, and a floor over the test loop's own pause between frames."""

    def __init__(self, inner: Any, factor: float) -> None:
        self.inner = inner
        self.factor = factor

    def detect(self, image: Any, min_score: float | None = None, near: bool = False) -> Any:
        started = time.perf_counter()
        found = self.inner.detect(image, min_score, near)
        time.sleep(max(0.5, (self.factor - 1) * (time.perf_counter() - started)))
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class Loop:
    """The frame loop as the agent sees it: it waits ``camera_wait_s`` for each frame, and runs
    the detector on every ``detect_every``-th (a motion gate skipping still frames)."""

    detector: Any = None
    detect_every: int = 1
    camera_wait_s: float = 0.05
    frames: int = 0
    people: int = 0
    detections: int = 0
    detect_s: float = 0.0
    busy_s: float = 0.0
    published: list[dict[str, Any]] = field(default_factory=list)

    def swap(self, detector: Any) -> None:
        self.detector = detector

    def count(self) -> LoopCount:
        return LoopCount(self.frames, self.people, self.detections, self.detect_s, self.busy_s)

    def run(self, agent: OtaAgent, seconds: float, until: Callable[[], bool]) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not until():
            agent.tick(self.detector)
            started = time.perf_counter()
            if self.frames % self.detect_every == 0:
                self.detector.detect(np.zeros((360, 640, 3), np.uint8))
                self.detections += 1
                self.detect_s += time.perf_counter() - started
            self.frames += 1
            self.people += 1
            self.busy_s += time.perf_counter() - started
            time.sleep(self.camera_wait_s)


def make_agent(settings: Settings, loop: Loop) -> OtaAgent:
    installer = Installer(settings, store_of(settings))
    agent = OtaAgent(
        installer,
        publish=loop.published.append,
        swap=loop.swap,
        heartbeat=loop.count,
    )
    installer.report = agent.report
    return agent


def prepared_update(settings: Settings, detector: Any, bundle: Path) -> tuple[Loop, OtaAgent, Any]:
    """A loop running ``detector``, its agent, and ``bundle`` verified and loaded, not yet in use."""
    loop = Loop(detector=detector)
    agent = make_agent(settings, loop)
    return loop, agent, agent.installer.prepare(Download(str(bundle)))


def hand_over(agent: OtaAgent, prepared: Any) -> None:
    """Give the agent a prepared bundle as its worker thread would, so a test can doctor it first."""
    agent._ready = (prepared, None)
    agent._busy = True


def states(loop: Loop) -> list[str]:
    return [body["state"] for body in loop.published]


def test_an_exception_in_probation_swaps_the_old_model_back_at_once(
    make_settings: Callable[..., Settings], ota_kit: Any, detector: Any
) -> None:
    settings = make_settings(ota={"trusted_keys_dir": str(ota_kit.keys), "probation_s": 600})
    loop, agent, prepared = prepared_update(settings, detector, ota_kit.bundle("good"))
    prepared.detector = RaisingDetector(prepared.detector)
    hand_over(agent, prepared)
    loop.run(agent, 30, lambda: "rolled_back" in states(loop))
    assert states(loop)[-3:] == ["switching", "probation", "rolled_back"]
    assert "RuntimeError: tensor arena exhausted" in loop.published[-1]["reason"]
    assert loop.detector is detector  # the previous detector object, still in memory
    assert agent.installer.store.current() is None
    assert agent.installer.store.load_state().trial is None


def test_a_model_too_slow_on_the_camera_is_rolled_back_after_probation(
    make_settings: Callable[..., Settings], ota_kit: Any, detector: Any
) -> None:
    settings = make_settings(ota={"trusted_keys_dir": str(ota_kit.keys), "probation_s": 2})
    loop, agent, prepared = prepared_update(settings, detector, ota_kit.bundle("good"))
    # Each detection takes four times as long as before: well under half the frame rate.
    prepared.detector = SlowDetector(prepared.detector, 4)
    # The previous model's frame rate over the last probation_s: the baseline to compare with.
    loop.run(agent, 60, lambda: agent._baseline(agent.clock()).fps is not None)
    hand_over(agent, prepared)
    loop.run(agent, 60, lambda: "rolled_back" in states(loop))
    assert states(loop)[-3:] == ["switching", "probation", "rolled_back"]
    assert "fps (busy, it could do" in loop.published[-1]["reason"]
    assert "below 50% of" in loop.published[-1]["reason"]
    assert loop.published[-2]["baseline_fps"] > 0
    assert loop.detector is detector


def test_a_camera_that_slows_down_during_probation_is_not_blamed_on_the_model(
    make_settings: Callable[..., Settings], ota_kit: Any, detector: Any
) -> None:
    """Dusk: the camera sends frames at a fraction of the rate it did (longer exposures) just as
    a model of the same speed goes on probation. The loop's fps falls far below half, but the
    loop spends that time waiting for frames, not on them."""
    settings = make_settings(ota={"trusted_keys_dir": str(ota_kit.keys), "probation_s": 3})
    loop, agent, prepared = prepared_update(settings, detector, ota_kit.bundle("good"))
    loop.run(agent, 60, lambda: agent._baseline(agent.clock()).detect_ms is not None)
    hand_over(agent, prepared)
    loop.camera_wait_s = 0.4
    loop.run(agent, 60, lambda: states(loop)[-1] in ("committed", "rolled_back"))
    assert states(loop)[-3:] == ["switching", "probation", "committed"], loop.published[-1]
    fps = float(loop.published[-1]["reason"].split("passed: ")[1].split(" fps")[0])
    assert fps < 0.5 * loop.published[-2]["baseline_fps"]  # the drop the old check rolled back


def test_a_slower_model_is_rolled_back_even_when_the_motion_gate_hides_it_from_the_fps(
    make_settings: Callable[..., Settings], ota_kit: Any, detector: Any
) -> None:
    """An empty store at night: the detector runs on one frame in 30, so a model four times
    slower (and at least half a second a frame) barely moves the loop's frame rate; its time per
    detection gives it away: on every frame it could not keep half the loop's rate."""
    settings = make_settings(ota={"trusted_keys_dir": str(ota_kit.keys), "probation_s": 8})
    loop, agent, prepared = prepared_update(settings, detector, ota_kit.bundle("good"))
    loop.detect_every = 30
    prepared.detector = SlowDetector(prepared.detector, 4)
    loop.run(agent, 60, lambda: agent._baseline(agent.clock()).detect_ms is not None)
    hand_over(agent, prepared)
    loop.run(agent, 90, lambda: "rolled_back" in states(loop))
    assert states(loop)[-3:] == ["switching", "probation", "rolled_back"]
    reason = loop.published[-1]["reason"]
    assert (
        "ms per detection:" in reason
        and "fps with the detector on every frame, below 50% of" in reason
    ), reason
    assert loop.published[-2]["baseline_detect_ms"] > 0
    assert loop.detector is detector


def test_a_second_request_while_one_runs_is_refused(
    make_settings: Callable[..., Settings], ota_kit: Any, detector: Any
) -> None:
    settings = make_settings(
        ota={
            "trusted_keys_dir": str(ota_kit.keys),
            "probation_s": 1,
            "min_fps_ratio": LOAD_PROOF_FPS_RATIO,
        }
    )
    loop = Loop(detector=detector)
    agent = make_agent(settings, loop)
    bundle = str(ota_kit.bundle("good"))
    assert agent.request_install(Download(bundle)) is None
    assert agent.request_install(Download(bundle)) == "another update is in progress"
    loop.run(agent, 60, lambda: "committed" in states(loop))
    assert states(loop)[-1] == "committed"
    assert isinstance(loop.detector, GuardedDetector) is False  # unwrapped after commit
    assert agent.request_install(Download(bundle)) is None  # free again


def test_a_stopping_daemon_waits_for_the_self_test_under_way(
    make_settings: Callable[..., Settings], ota_kit: Any, detector: Any
) -> None:
    """Exiting under a self-test's inference can abort the interpreter: stop() waits for it (and
    no longer than it is told to)."""
    settings = make_settings(ota={"trusted_keys_dir": str(ota_kit.keys)})
    loop = Loop(detector=detector)
    agent = make_agent(settings, loop)
    testing, release = threading.Event(), threading.Event()

    def hold_at_self_test(step: str) -> None:
        if step == "self_test":
            testing.set()
            release.wait(60)

    agent.installer.fault = hold_at_self_test
    agent.stop()  # nothing under way: returns at once
    assert agent.request_install(Download(str(ota_kit.bundle("good")))) is None
    assert testing.wait(60)
    stopper = threading.Thread(target=agent.stop)
    stopper.start()
    stopper.join(0.5)
    assert stopper.is_alive(), "stop() returned while the self-test was still running"
    release.set()
    stopper.join(60)
    assert not stopper.is_alive() and not any(
        t.name == "ota-install" for t in threading.enumerate()
    )
    assert agent.installer.store.load_state().trial is None, "nothing was swapped in"
    # Bounded: an install that does not finish in time is abandoned, and the stop goes on.
    testing.clear()
    release.clear()
    again = make_agent(settings, loop)
    again.installer.fault = hold_at_self_test
    assert again.request_install(Download(str(ota_kit.bundle("good")))) is None
    assert testing.wait(60)
    again.stop(wait_s=0.2)
    assert any(t.name == "ota-install" for t in threading.enumerate()), "still held, not joined"
    release.set()


def test_a_corrupt_state_file_is_set_aside(make_settings: Callable[..., Settings]) -> None:
    store = store_of(make_settings())
    store.root.mkdir(parents=True)
    store.state_path.write_text("{not json")
    assert store.load_state().committed is None
    assert store.state_path.with_suffix(".corrupt").read_text() == "{not json"

"""``intentcam bench``: throughput of the detector alone, of the whole pipeline, and of a peer.

Everything is measured in one run on the same clip, frames, threads and tiling:

- ``detector_fps``: decode + preprocess + invoke + post-processing, nothing else: the physical
  limit of this model on this machine;
- ``pipeline_fps``: the daemon's loop (capture, detection, tracking, analytics, telemetry into a
  temporary spool), motion gate off so the work is the same; ``ratio`` = pipeline / detector;
- ``gated_fps``: the same loop with the motion gate on (how much is skipped depends on the clip);
- ``peer_fps``: the same detector feeding Roboflow ``trackers`` ByteTrack and ``supervision``
  ``LineZone`` counting, the stack a developer would assemble by hand; with configured lines,
  its line counts are reported beside ours;
- per-stage p50/p95 ms, CPU use, peak RSS with every model the daemon uses loaded, start-up time to the
  first processed frame, and detector throughput per thread count;
- ``daemon_rss_peak_mb``: the peak resident memory of ``intentcam run`` itself on the clip, in a
  child process with these settings (and a typical door line and two zones when the config has
  none); the bench's own ``rss_peak_mb`` includes the peer and every model, so it is not the
  daemon's;
- on a Raspberry Pi the SoC temperature and throttling flags (``null`` elsewhere).
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from intentcam.capture import VideoFileSource
from intentcam.capture.frame import Frame
from intentcam.config import Settings, with_sections
from intentcam.detect import build_detector
from intentcam.errors import UserError
from intentcam.evaluation.peer import PeerTracker, import_peer
from intentcam.inference.model import load_model
from intentcam.models import load_manifest
from intentcam.pipeline import Pipeline, build_pipeline
from intentcam.progress import Progress, no_progress
from intentcam.records import Record
from intentcam.sinks import NullSink
from intentcam.telemetry.health import temperature_c, throttled
from intentcam.telemetry.service import Telemetry
from intentcam.track.bytetrack import TrackerSettings


class ClipAsCamera(VideoFileSource):
    """The first ``frames`` frames of a clip as a live camera faster than the loop: decoded
    beforehand, so every read is instant and the loop has no time to spare (a recording would
    get every pose at shelves; a camera gets what the pose budget allows)."""

    live = True

    def __init__(self, path: Path, frames: int) -> None:
        super().__init__(path)
        self._ready: list[Frame] = []
        while len(self._ready) < frames and (frame := super().read()) is not None:
            self._ready.append(frame)
        self._ready.reverse()

    def read(self, timeout: float | None = None) -> Frame | None:
        return self._ready.pop() if self._ready else super().read(timeout)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def detector_only(settings: Settings, clip: Path, frames: int, progress: Progress) -> float:
    """Frames per second of decode + detector, nothing else."""
    detector = build_detector(settings)
    source = VideoFileSource(clip)
    first = source.read()
    if first is None:
        raise UserError(f"{clip}: no frames")
    detector.detect(first.image)  # warm-up: the first invoke allocates
    low_score = TrackerSettings.from_config(settings.tracker, detector.operating_point).low_score
    count = 0
    started = time.perf_counter()
    for _ in progress(iter(range(frames)), frames, f"detector x{settings.detector.threads}"):
        frame = source.read()
        if frame is None:
            break
        detector.detect(frame.image, min_score=low_score)
        count += 1
    elapsed = time.perf_counter() - started
    source.close()
    return count / elapsed if elapsed > 0 else 0.0


class _Collect:
    """Keeps the analytics records of a run (for the gating comparison)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def write(self, record: Record, line: str | None = None) -> None:
        self.records.append(record)

    def close(self) -> None:
        return None


@contextmanager
def scratch_state(settings: Settings, **sections: dict[str, Any]) -> Iterator[Settings]:
    """``settings`` with a temporary state dir for one run (its spool and checkpoints are gone
    after it) and ``sections`` replaced as :func:`with_sections` does. The models stay where they
    are: with the default model dir (``<state_dir>/models``) a temporary state dir would
    otherwise hide them (root's /var/lib/intentcam)."""
    with tempfile.TemporaryDirectory(prefix="intentcam-bench-") as state:
        paths = {"state_dir": Path(state), "model_dir": settings.paths.models}
        yield with_sections(settings, paths=paths, **sections)


def pipeline_run(
    settings: Settings,
    clip: Path,
    frames: int,
    gated: bool,
    progress: Progress,
    collect: _Collect | None = None,
) -> dict[str, Any]:
    """The daemon's loop over the clip (telemetry into a temporary spool, no broker)."""
    with scratch_state(settings, mqtt={"host": None}) as settings:
        started = time.perf_counter()
        source = VideoFileSource(clip)
        telemetry = Telemetry(settings, collect or NullSink())
        pipeline = build_pipeline(settings, source, telemetry, gated=gated, report_every_s=3600)
        first_frame_at: list[float] = []

        def tick() -> None:
            if pipeline.heartbeat.frames and not first_frame_at:
                first_frame_at.append(time.perf_counter())

        pipeline.tick = tick
        stop = threading.Event()
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        label = "pipeline (gated)" if gated else "pipeline"
        bar = progress(iter(range(frames)), frames, label)
        summary = _run_with_bar(pipeline, stop, frames, bar)
        wall = time.perf_counter() - wall_before
        cpu = time.process_time() - cpu_before
        source.close()
        telemetry.spool.close()
    return {
        "detector": pipeline.detector.describe()["id"],
        "fps": summary["frames"] / wall if wall > 0 else 0.0,
        "frames": summary["frames"],
        "invokes": summary["invokes"],
        "gated_frames": summary["gated_frames"],
        "stages": pipeline.timings.summary(),
        "cpu_percent": round(cpu / wall * 100, 1) if wall > 0 else 0.0,
        "startup_s": round(first_frame_at[0] - started, 3) if first_frame_at else None,
    }


def _run_with_bar(
    pipeline: Pipeline, stop: threading.Event, frames: int, bar: Iterator[Any]
) -> dict[str, Any]:
    """Run the pipeline, advancing the progress bar from its heartbeat."""
    advance = getattr(bar, "update", None)
    done = [0]
    inner_tick = pipeline.tick

    def tick() -> None:
        if inner_tick is not None:
            inner_tick()
        if advance is not None and pipeline.heartbeat.frames > done[0]:
            advance(pipeline.heartbeat.frames - done[0])
            done[0] = pipeline.heartbeat.frames

    pipeline.tick = tick
    summary = pipeline.run(stop, max_frames=frames)
    close = getattr(bar, "close", None)
    if close is not None:
        close()
    return summary


def totals(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Line in/out and zone entries and visits summed over every counts window."""
    lines: dict[str, dict[str, int]] = {}
    zones: dict[str, dict[str, int]] = {}
    for record in records:
        if record.get("type") != "counts":
            continue
        for line, counts in record["lines"].items():
            total = lines.setdefault(line, {"in": 0, "out": 0})
            total["in"] += counts["in"]
            total["out"] += counts["out"]
        for zone, stats in record["zones"].items():
            total = zones.setdefault(zone, {"entries": 0, "visits": 0})
            total["entries"] += stats["entries"]
            total["visits"] += stats["dwell"]["count"]
    return {"lines": lines, "zones": zones}


def compare_gating(
    settings: Settings, clip: Path, frames: int, progress: Progress = no_progress
) -> dict[str, Any]:
    """The same clip with the motion gate off and on: invocations and the counts of each."""
    report: dict[str, Any] = {"clip": str(clip)}
    for name, gated in (("off", False), ("on", True)):
        collect = _Collect()
        run = pipeline_run(settings, clip, frames, gated, progress, collect)
        report[name] = {
            "frames": run["frames"],
            "invokes": run["invokes"],
            "gated_frames": run["gated_frames"],
            "fps": round(run["fps"], 2),
            **totals(collect.records),
        }
    report["invokes_saved"] = round(
        1 - report["on"]["invokes"] / max(report["off"]["invokes"], 1), 3
    )
    report["identical_counts"] = (
        report["on"]["lines"] == report["off"]["lines"]
        and report["on"]["zones"] == report["off"]["zones"]
    )
    return report


def peer_run(settings: Settings, clip: Path, frames: int, progress: Progress) -> dict[str, Any]:
    """Same detector -> trackers ByteTrack -> supervision LineZone (first segment of each line)."""
    sv, _ = import_peer()
    detector = build_detector(settings)
    source = VideoFileSource(clip)
    first = source.read()
    if first is None:
        raise UserError(f"{clip}: no frames")
    width, height = first.size
    tracking = TrackerSettings.from_config(settings.tracker, detector.operating_point)
    tracker = PeerTracker(tracking, width, height, source.fps)
    zones = {
        line.id: sv.LineZone(
            start=sv.Point(line.points[0][0] * width, line.points[0][1] * height),
            end=sv.Point(line.points[1][0] * width, line.points[1][1] * height),
            triggering_anchors=(sv.Position.BOTTOM_CENTER,),
        )
        for line in settings.lines
    }
    low_score = tracking.low_score
    count = 0
    frame: Frame | None = first
    started = time.perf_counter()
    for _ in progress(iter(range(frames)), frames, "peer"):
        if frame is None:
            break
        tracker.update(detector.detect(frame.image, min_score=low_score), frame.timestamp)
        for zone in zones.values():
            zone.trigger(tracker.last)
        count += 1
        frame = source.read()
    elapsed = time.perf_counter() - started
    source.close()
    return {
        "fps": count / elapsed if elapsed > 0 else 0.0,
        "lines": {
            line_id: {"in": zone.in_count, "out": zone.out_count} for line_id, zone in zones.items()
        },
    }


def edgetpu_comparison(
    settings: Settings, clip: Path, frames: int, progress: Progress
) -> dict[str, Any]:
    """Detector-only fps on the CPU and on the Edge TPU, when a Coral and the model exist."""
    from intentcam.inference.edgetpu import load_edgetpu
    from intentcam.inference.runtime import import_runtime

    manifest = load_manifest(settings.paths.manifest)
    model_id = settings.detector.model
    if model_id == "auto":  # the Edge TPU comparison is of the Edge TPU candidate
        if not manifest.auto.edgetpu:
            return {"available": False, "reason": "the manifest ranks no Edge TPU detector"}
        model_id = manifest.auto.edgetpu[0]
        settings = with_sections(settings, detector={"model": model_id})
    spec = manifest.get(model_id)
    _, problem = load_edgetpu(spec, settings.paths.models, import_runtime())
    if problem is not None:
        return {"available": False, "reason": f"no Edge TPU for {model_id}: {problem}"}
    on = with_sections(settings, detector={"delegate": "edgetpu"})
    off = with_sections(settings, detector={"delegate": "cpu"})
    return {
        "available": True,
        "edgetpu_fps": round(detector_only(on, clip, frames, progress), 2),
        "cpu_fps": round(detector_only(off, clip, frames, progress), 2),
    }


def compare_detectors(
    settings: Settings,
    clip: Path,
    frames: int,
    others: list[str],
    progress: Progress = no_progress,
    rounds: int = 2,
) -> dict[str, Any]:
    """The pipeline with the configured detector and with each of ``others``, side by side.

    Runs alternate (configured, other, configured, other...) and each keeps its best round, so
    a burst of load on a shared machine does not decide the comparison.
    """
    best: dict[str, dict[str, Any]] = {}
    for _ in range(rounds):
        for model_id in ["", *others]:
            run_settings = (
                with_sections(settings, detector={"model": model_id}) if model_id else settings
            )
            run = pipeline_run(run_settings, clip, frames, False, progress)
            key = model_id or "configured"
            if key not in best or run["fps"] > best[key]["fps"]:
                best[key] = run
    return {
        key: {
            "detector": run["detector"],
            "pipeline_fps": round(run["fps"], 2),
            "invokes_per_frame": round(run["invokes"] / max(run["frames"], 1), 2),
            "invoke_ms_p50": run["stages"].get("invoke", {}).get("p50"),
        }
        for key, run in best.items()
    }


def run_benchmark(
    settings: Settings,
    clip: Path,
    frames: int,
    *,
    threads: list[int] | None = None,
    peer: bool = True,
    compare: list[str] | None = None,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """The whole benchmark; see the module docstring for the keys."""
    if not clip.is_file():
        raise UserError(f"--clip {clip}: not found")
    manifest = load_manifest(settings.paths.manifest)
    loaded = [
        load_model(spec, settings.paths.models, threads=1, delegate="cpu")
        for spec in manifest.in_use()
    ]
    rss_models = peak_rss_mb()
    del loaded
    collect = _Collect()
    pipeline = pipeline_run(settings, clip, frames, False, progress, collect)
    detector_fps = detector_only(settings, clip, frames, progress)
    gated = pipeline_run(settings, clip, frames, True, progress)
    thread_counts = sorted(set(threads or [1, settings.detector.threads]))
    per_thread = {
        str(n): round(
            detector_only(with_sections(settings, detector={"threads": n}), clip, frames, progress),
            2,
        )
        for n in thread_counts
    }
    result: dict[str, Any] = {
        "clip": str(clip),
        "detector": pipeline["detector"],
        "frames": pipeline["frames"],
        "threads": settings.detector.threads,
        "tiling": settings.detector.tiling,
        "detector_fps": round(detector_fps, 2),
        "pipeline_fps": round(pipeline["fps"], 2),
        "ratio": round(pipeline["fps"] / detector_fps, 3) if detector_fps else None,
        "gated_fps": round(gated["fps"], 2),
        "gated_invokes_saved": round(1 - gated["invokes"] / max(pipeline["invokes"], 1), 3),
        "stages": pipeline["stages"],
        "cpu_percent": pipeline["cpu_percent"],
        "rss_models_mb": rss_models,
        "rss_peak_mb": peak_rss_mb(),
        "startup_s": pipeline["startup_s"],
        "detector_fps_by_threads": per_thread,
        "lines": totals(collect.records)["lines"],
        "edgetpu": edgetpu_comparison(settings, clip, frames, progress),
        "temperature_c": temperature_c(),
        "throttled": throttled(),
        "cpu_count": os.cpu_count(),
    }
    if peer:
        peer_result = peer_run(settings, clip, frames, progress)
        result["peer_fps"] = round(peer_result["fps"], 2)
        result["peer_lines"] = peer_result["lines"]
    else:
        result["peer_fps"] = None
    if compare:
        result["compare"] = compare_detectors(settings, clip, frames, compare, progress)
    return result


def write_report(
    result: Any, json_out: Path | None = None, table: str = "", markdown_out: Path | None = None
) -> None:
    """Write a benchmark's result as JSON and its table as Markdown, where asked (``None``: not)."""
    for path, text in ((json_out, json.dumps(result, indent=2)), (markdown_out, table + "\n")):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")


def markdown(result: dict[str, Any]) -> str:
    """The result as a Markdown table."""
    rows = [
        ("clip", result["clip"]),
        ("detector", result["detector"]),
        ("frames", result["frames"]),
        ("threads / tiling", f"{result['threads']} / {result['tiling']}"),
        ("detector-only fps", result["detector_fps"]),
        ("pipeline fps", result["pipeline_fps"]),
        ("ratio pipeline / detector", result["ratio"]),
        ("pipeline fps, motion gate on", result["gated_fps"]),
        ("detector invocations saved by the gate", result["gated_invokes_saved"]),
        ("peer fps (trackers ByteTrack + supervision LineZone)", result["peer_fps"]),
        ("line counts, ours / peer", f"{result['lines']} / {result.get('peer_lines')}"),
        ("Edge TPU", result["edgetpu"]),
        ("CPU % (of all cores)", result["cpu_percent"]),
        ("RSS with all models loaded, MB", result["rss_models_mb"]),
        ("peak RSS of this bench process, MB", result["rss_peak_mb"]),
        ("peak RSS of `intentcam run` (daemon_rss_peak_mb), MB", result["daemon_rss_peak_mb"]),
        ("start-up to first frame, s", result["startup_s"]),
        ("detector fps by threads", result["detector_fps_by_threads"]),
        ("SoC temperature / throttled", f"{result['temperature_c']} / {result['throttled']}"),
    ]
    lines = ["| measure | value |", "|---|---|"] + [f"| {name} | {value} |" for name, value in rows]
    if "compare" in result:
        lines += [
            "",
            "| detector | pipeline fps | invokes per frame | invoke p50 ms |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {v['detector']}{' (configured)' if key == 'configured' else ''} | "
            f"{v['pipeline_fps']} | {v['invokes_per_frame']} | {v['invoke_ms_p50']} |"
            for key, v in result["compare"].items()
        ]
    lines += ["", "| stage | p50 ms | p95 ms |", "|---|---|---|"]
    lines += [f"| {stage} | {v['p50']} | {v['p95']} |" for stage, v in result["stages"].items()]
    return "\n".join(lines)

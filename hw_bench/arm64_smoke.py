"""arm64 smoke test: the wheel installed and run in a Debian Bookworm arm64 root under qemu.

What a Raspberry Pi OS (Bookworm, arm64) or Jetson user does, on this x86 machine:
1. ``debootstrap --arch=arm64`` a minimal Bookworm root (cached in ``--root``; built once);
2. copy the wheel (``make dist``), the verified models, a clip and an image into it;
3. inside it, under ``qemu-aarch64-static`` (binfmt): a virtualenv, ``pip install`` of the wheel
   with its dependencies from the package index (aarch64 wheels), then ``intentcam models
   list``, ``intentcam detect`` on the image with the default detector (YOLOX-Nano on ONNX
   Runtime) and with a LiteRT model (SSD MobileNet v1, uint8), and ``intentcam run
   --max-frames 30`` on the clip;
4. the same commands on this machine, and a comparison: the same people found, boxes matched
   within ``--tolerance`` (IoU), the same people per frame over the clip.

Needs root (debootstrap, chroot, binfmt) and the Debian packages debootstrap, qemu-user-static
and binfmt-support (``make arm64-smoke`` installs them). Slow under emulation: minutes, not
seconds; it is not part of ``make test``. Prints the steps with their durations, and the
outcome as a table or ``--json``; exit 1 when a step fails or the detections differ.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INTENTCAM_SHARED", ROOT.parent / "shared"))
MIRROR = "http://deb.debian.org/debian"
#: Debian packages of the arm64 root: Python and what pip and the wheels need at run time.
ROOT_PACKAGES = "python3,python3-venv,python3-pip,ca-certificates,libgomp1"
#: Detectors compared: the default (ONNX Runtime) and one LiteRT model.
DETECTORS = ("auto", "ssd_mobilenet_v1_coco_quant")
INSIDE = Path("/opt/intentcam-smoke")
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"


@dataclass
class Step:
    name: str
    seconds: float
    ok: bool
    detail: str = ""


@dataclass
class Report:
    root: str
    steps: list[Step] = field(default_factory=list)
    comparisons: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(step.ok for step in self.steps) and all(
            c.get("same", False) for c in self.comparisons.values()
        )


class SmokeError(Exception):
    """A step failed; the message says which and why, in one line."""


def run(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 7200) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SmokeError(f"{argv[0]}: {exc}") from None
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise SmokeError(f"{' '.join(argv[:4])}...: exit {done.returncode}: "
                         f"{last[-1] if last else 'no output'}")  # fmt: skip
    return done.stdout


def timed(report: Report, name: str, action: Any) -> Any:
    print(f"arm64-smoke: {name} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        result = action()
    except SmokeError as exc:
        report.steps.append(Step(name, round(time.monotonic() - started, 1), False, str(exc)))
        raise
    seconds = round(time.monotonic() - started, 1)
    report.steps.append(Step(name, seconds, True))
    print(f"arm64-smoke: {name}: {seconds} s", file=sys.stderr, flush=True)
    return result


def build_root(root: Path) -> None:
    """A minimal Bookworm arm64 root; kept between runs (remove it to rebuild)."""
    if (root / "usr" / "bin" / "python3").exists():
        return
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    run(["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={ROOT_PACKAGES}",
         "bookworm", str(partial), MIRROR])  # fmt: skip
    partial.rename(root)


@contextmanager
def mounted(root: Path) -> Iterator[None]:
    """/proc and /dev inside the root while it runs, unmounted afterwards. Not /sys: under
    qemu-user it describes this x86 host's CPUs, and ONNX Runtime's CPU detection crashes on
    that (``import onnxruntime`` segfaults); a real arm64 board has its own."""
    done = []
    try:
        for source, target, options in (("proc", "proc", ["-t", "proc"]),
                                        ("/dev", "dev", ["--bind"])):  # fmt: skip
            where = root / target
            where.mkdir(exist_ok=True)
            if not os.path.ismount(where):
                run(["mount", *options, source, str(where)])
                done.append(where)
        yield
    finally:
        for where in reversed(done):
            subprocess.run(["umount", "-l", str(where)], check=False)


def chroot(root: Path, *argv: str, timeout: float = 7200) -> str:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_CERT": str(INSIDE / "host-ca.crt"),
           "PIP_DEFAULT_TIMEOUT": "180"}  # fmt: skip
    return run([CHROOT, str(root), *argv], env=env, timeout=timeout)


def stage(root: Path, wheel: Path, models: Path, clip: Path, image: Path) -> None:
    """The wheel, the models, the clip and the image, inside the root; DNS for pip."""
    target = root / INSIDE.relative_to("/")
    shutil.rmtree(target, ignore_errors=True)
    (target / "models").mkdir(parents=True)
    shutil.copy2(wheel, target / wheel.name)
    for model in models.iterdir():
        if model.is_file():
            shutil.copy2(model, target / "models" / model.name)
    shutil.copy2(clip, target / ("clip" + clip.suffix))
    shutil.copy2(image, target / ("image" + image.suffix))
    shutil.copy2("/etc/resolv.conf", root / "etc" / "resolv.conf")
    # The host's CA bundle: where the package index is reached through a TLS-inspecting proxy
    # (PIP_CERT), the root's stock bundle would not trust it.
    shutil.copy2(os.environ.get("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt"),
                 target / "host-ca.crt")  # fmt: skip


def install(root: Path, wheel: Path) -> str:
    chroot(root, "python3", "-m", "venv", "/opt/venv")
    chroot(root, "/opt/venv/bin/pip", "install", "-q", str(INSIDE / wheel.name))
    return chroot(root, "/opt/venv/bin/pip", "list", "--format=freeze")


def commands(clip: str, image: str) -> dict[str, list[str]]:
    """The commands run on both sides (``intentcam`` prepended by the caller)."""
    cmds = {"models": ["models", "list", "--json"]}
    for detector in DETECTORS:
        cmds[f"detect:{detector}"] = ["detect", image, "--json"]
    cmds["run"] = ["run", "--source", clip, "--max-frames", "30", "--sink", "none", "--json"]
    return cmds


def environment(model_dir: str, state_dir: str, detector: str | None) -> dict[str, str]:
    env = {"INTENTCAM_PATHS__MODEL_DIR": model_dir, "INTENTCAM_PATHS__STATE_DIR": state_dir}
    if detector is not None:
        env["INTENTCAM_DETECTOR__MODEL"] = detector
    return env


def run_side(
    launcher: list[str], base_env: dict[str, str], model_dir: str, state_dir: str, clip: str,
    image: str,
) -> dict[str, Any]:  # fmt: skip
    """Every command on one side; parsed JSON by command name."""
    results: dict[str, Any] = {}
    for name, argv in commands(clip, image).items():
        detector = name.split(":", 1)[1] if name.startswith("detect:") else None
        env = {**base_env, **environment(model_dir, state_dir, detector)}
        out = run([*launcher, *argv], env=env)
        results[name] = json.loads(out.strip().splitlines()[-1])
    return results


def iou(a: list[float], b: list[float]) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def compare_detections(
    x86: dict[str, Any], arm: dict[str, Any], tolerance: float
) -> dict[str, Any]:
    """Greedy one-to-one matching by IoU; ``same`` when every person is matched above it."""
    left = [p["box"] for p in x86["people"]]
    right = [p["box"] for p in arm["people"]]
    used: set[int] = set()
    ious = []
    for box in left:
        scores = [(iou(box, other), j) for j, other in enumerate(right) if j not in used]
        best, j = max(scores, default=(0.0, -1))
        if j >= 0:
            used.add(j)
        ious.append(best)
    worst = min(ious, default=1.0)
    return {
        "x86_people": len(left),
        "arm64_people": len(right),
        "min_iou": round(worst, 4),
        "mean_iou": round(float(np.mean(ious)) if ious else 1.0, 4),
        "same": len(left) == len(right) and worst >= tolerance,
    }


def compare_runs(x86: dict[str, Any], arm: dict[str, Any]) -> dict[str, Any]:
    same = x86["frames"] == arm["frames"] and abs(
        x86["people_per_frame"] - arm["people_per_frame"]
    ) <= 0.05 * max(x86["people_per_frame"], 1.0)
    return {
        "frames": [x86["frames"], arm["frames"]],
        "people_per_frame": [x86["people_per_frame"], arm["people_per_frame"]],
        "fps": [x86["fps"], arm["fps"]],
        "same": same,
    }


def smoke(args: argparse.Namespace) -> Report:
    report = Report(str(args.root))
    wheel = next(iter(sorted(args.dist.glob("intentcam-*.whl"))), None)
    if wheel is None:
        raise SmokeError(f"no wheel in {args.dist}: run `make dist` first")
    timed(report, "debootstrap bookworm arm64 (cached)", lambda: build_root(args.root))
    timed(report, "stage wheel, models, clip, image",
          lambda: stage(args.root, wheel, args.models, args.clip, args.image))  # fmt: skip
    with mounted(args.root):
        return _inside(args, report, wheel)


def _inside(args: argparse.Namespace, report: Report, wheel: Path) -> Report:
    freeze = timed(report, "venv + pip install of the wheel (arm64)",
                   lambda: install(args.root, wheel))  # fmt: skip
    report.comparisons["packages"] = {
        "installed": sorted(line.split("==")[0] for line in freeze.split()),
        "same": "scipy" not in freeze.lower(),
    }
    arch = chroot(args.root, "uname", "-m").strip()
    report.comparisons["architecture"] = {"uname": arch, "same": arch == "aarch64"}
    inside_clip = str(INSIDE / ("clip" + args.clip.suffix))
    inside_image = str(INSIDE / ("image" + args.image.suffix))
    chroot_env = {"PATH": "/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    arm = timed(report, "intentcam models list / detect x2 / run 30 frames (arm64, emulated)",
                lambda: run_side([CHROOT, str(args.root), "/opt/venv/bin/intentcam"], chroot_env,
                                 str(INSIDE / "models"), "/tmp/intentcam-state", inside_clip,
                                 inside_image))  # fmt: skip
    host_env = {k: v for k, v in os.environ.items() if not k.startswith("INTENTCAM_")}
    state = Path(args.root.parent / "x86-state")
    x86 = timed(report, "the same on this machine (x86-64)",
                lambda: run_side([sys.executable, "-m", "intentcam"], host_env, str(args.models),
                                 str(state), str(args.clip), str(args.image)))  # fmt: skip
    states = [[m["id"], m["state"]] for m in arm["models"]["models"]]
    report.comparisons["models list"] = {
        "verified_arm64": sum(state == "verified" for _, state in states),
        "same": states == [[m["id"], m["state"]] for m in x86["models"]["models"]],
    }
    for detector in DETECTORS:
        key = f"detect:{detector}"
        report.comparisons[key] = compare_detections(x86[key], arm[key], args.tolerance)
    report.comparisons["run"] = compare_runs(x86["run"], arm["run"])
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])  # fmt: skip
    parser.add_argument(
        "--root",
        type=Path,
        default=ROOT / ".cache" / "arm64-bookworm",
        help="the arm64 root (built once, reused; default .cache/arm64-bookworm)",
    )
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="where the wheel is")
    parser.add_argument("--models", type=Path, required=True, help="verified models folder")
    parser.add_argument("--clip", type=Path, default=SHARED / "data" / "concourse_overhead.avi")
    parser.add_argument("--image", type=Path, default=SHARED / "data" / "kite_and_cold.jpg")
    parser.add_argument(
        "--tolerance", type=float, default=0.9, help="least IoU of matched boxes (default 0.9)"
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the report as JSON")
    args = parser.parse_args()  # fmt: skip
    if os.geteuid() != 0:
        print("arm64-smoke: error: needs root (debootstrap, chroot)", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        report = smoke(args)
    except SmokeError as exc:
        print(f"arm64-smoke: error: {exc}", file=sys.stderr)
        return 1
    body = {**asdict(report), "ok": report.ok, "seconds": round(time.monotonic() - started, 1)}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(body, indent=2), encoding="utf-8")
    for step in report.steps:
        print(f"{'ok' if step.ok else 'FAIL':4} {step.seconds:8.1f} s  {step.name}")
    for name, comparison in report.comparisons.items():
        shown = {k: v for k, v in comparison.items() if k not in ("same", "installed")}
        print(f"{'same' if comparison['same'] else 'DIFF':4} {name}: {shown}")
    print(f"arm64-smoke: {'passed' if report.ok else 'FAILED'} in {body['seconds']} s")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""``intentcam ota install|status|rollback``: model updates on this device."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intentcam.cli.common import add_config_option, settings_from
from intentcam.durable import atomic_write
from intentcam.errors import UserError

if TYPE_CHECKING:
    from intentcam.config import Settings

# The OTA machinery (detectors, OpenCV) is imported by each command, not by `intentcam --help`.
NAME = "ota"
TERMINAL = ("committed", "failed", "rolled_back")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        NAME,
        help="install, inspect or roll back model updates",
        description="Model updates (signed .swu bundles built with intentcam-ota). With a daemon "
        "running on this state dir, install and rollback are handed to it and it hot-swaps the "
        "model between two frames; without one, install verifies, self-tests and switches the "
        "store so the next start runs the new model on probation.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    install = actions.add_parser(
        "install",
        help="install a bundle (file or http(s) URL)",
        description="download -> verify (trusted keys in ota.trusted_keys_dir, every file hash) "
        "-> anti-downgrade (serial) -> unpack -> self-test -> switch. Every refusal exits 1 "
        "with the step and the reason; nothing loaded changes.",
    )
    install.add_argument("source", metavar="BUNDLE|URL")
    install.add_argument("--sha256", metavar="HEX", help="expected sha256 of the bundle file")
    install.add_argument(
        "--wait",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="with a running daemon: how long to follow the install (default 600)",
    )
    install.add_argument("--json", action="store_true", help="print the final state as JSON")
    add_config_option(install)
    install.set_defaults(handler=install_bundle)

    status = actions.add_parser("status", help="what is installed, committed, on trial")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    add_config_option(status)
    status.set_defaults(handler=show_status)

    rollback = actions.add_parser(
        "rollback",
        help="go back to the previous version",
        description="Roll back the version on trial, or else the committed one, to the version "
        "before it (the packaged models when there is none).",
    )
    rollback.add_argument("--reason", default="requested by the operator")
    rollback.add_argument("--json", action="store_true", help="print the final state as JSON")
    rollback.add_argument("--wait", type=float, default=60.0, metavar="SECONDS")
    add_config_option(rollback)
    rollback.set_defaults(handler=roll_back)


def _printer(json_output: bool) -> Any:
    def show(state: str, details: dict[str, Any]) -> None:
        if not json_output:
            extra = " ".join(f"{k}={v}" for k, v in details.items() if v is not None)
            print(f"ota: {state} {extra}".rstrip(), file=sys.stderr)

    return show


def install_bundle(args: argparse.Namespace) -> int:
    from intentcam.ota.bundle import BundleError
    from intentcam.ota.download import Download
    from intentcam.ota.install import Installer, fault_from_environment, store_of
    from intentcam.ota.store import describe
    from intentcam.service.lock import daemon_running

    settings = settings_from(args)
    source = args.source
    if "://" not in source:
        source = str(Path(source).resolve())
    if daemon_running(settings.paths.state_dir):
        request = {"action": "install", "url": source, "sha256": args.sha256}
        return _through_daemon(settings, request, args)
    installer = Installer(
        settings,
        store_of(settings),
        report=_printer(args.json),
        fault=fault_from_environment(),
    )
    try:
        prepared = installer.prepare(Download(source, args.sha256))
        state = installer.switch(prepared, started=False)
    except BundleError as exc:
        if args.json:
            _print_result(True, {"state": "failed", "step": exc.step, "reason": exc.reason})
        raise UserError(f"ota install refused at {exc.step}: {exc.reason}") from None
    result = {
        "state": "switched",
        "trial": describe(state.trial),
        "reason": "no daemon running: the next start runs it on probation",
    }
    _print_result(args.json, result)
    return 0


def roll_back(args: argparse.Namespace) -> int:
    from intentcam.ota.install import Installer, store_of
    from intentcam.ota.store import describe
    from intentcam.service.lock import daemon_running

    settings = settings_from(args)
    if daemon_running(settings.paths.state_dir):
        return _through_daemon(settings, {"action": "rollback", "reason": args.reason}, args)
    installer = Installer(settings, store_of(settings))
    before = installer.store.load_state()
    if before.trial is None and before.committed is None:
        raise UserError("nothing to roll back: the packaged models run")
    state = installer.rollback(args.reason)
    _print_result(args.json, {"state": "rolled_back", "current": describe(state.committed)})
    return 0


def _through_daemon(settings: Settings, request: dict[str, Any], args: argparse.Namespace) -> int:
    from intentcam.ota.agent import INBOX, STATUS_FILE
    from intentcam.ota.install import store_of

    store = store_of(settings)
    inbox = store.root / INBOX
    status_path = store.root / STATUS_FILE
    since = status_path.stat().st_mtime_ns if status_path.exists() else 0
    atomic_write(inbox / f"{time.time_ns()}-{os.getpid()}.json", json.dumps(request).encode())
    print(f"ota: handed to the running daemon ({store.root})", file=sys.stderr)
    deadline = time.monotonic() + args.wait
    seen = None
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if not status_path.exists() or status_path.stat().st_mtime_ns == since:
            continue
        since = status_path.stat().st_mtime_ns
        try:
            body = json.loads(status_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if body.get("state") != seen:
            seen = body.get("state")
            if seen not in TERMINAL:
                _printer(args.json)(str(seen), {"version": body.get("version")})
        if seen in TERMINAL:
            _print_result(args.json, body)
            if seen == "committed" or (request["action"] == "rollback" and seen == "rolled_back"):
                return 0
            raise UserError(f"ota {request['action']}: {seen}: {body.get('reason')}")
    raise UserError(f"ota {request['action']}: no final state within {args.wait:.0f} s")


def show_status(args: argparse.Namespace) -> int:
    from intentcam.ota.agent import STATUS_FILE
    from intentcam.ota.install import store_of
    from intentcam.ota.store import describe
    from intentcam.service.lock import daemon_running

    settings = settings_from(args)
    store = store_of(settings)
    state = store.load_state()
    last: dict[str, Any] = {}
    status_path = store.root / STATUS_FILE
    if status_path.exists():
        try:
            last = json.loads(status_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            last = {}
    body = {
        "store": str(store.store),
        "daemon_running": daemon_running(settings.paths.state_dir),
        "current": store.current(),
        "committed": describe(state.committed),
        "trial": describe(state.trial),
        "previous": [describe(item) for item in state.previous],
        "serials": state.serials,
        "last_state": last.get("state"),
        "last_reason": last.get("reason"),
        "history": [item.model_dump() for item in state.history],
    }
    if args.json:
        print(json.dumps(body))
        return 0
    committed = state.committed.label() if state.committed else "none (packaged models)"
    print(f"committed: {committed}")
    print(f"on trial:  {state.trial.label() if state.trial else 'none'}")
    print(f"previous:  {', '.join(item.label() for item in state.previous) or 'none'}")
    print(f"serials:   {state.serials or 'none installed'}")
    print(f"daemon:    {'running' if body['daemon_running'] else 'not running'}")
    if last:
        print(f"last:      {last.get('state')} {last.get('reason') or ''}".rstrip())
    for item in state.history[:5]:
        print(f"  {item.ts} {item.event} {item.version or ''} {item.reason or ''}".rstrip())
    return 0


def _print_result(json_output: bool, body: dict[str, Any]) -> None:
    if json_output:
        print(json.dumps(body))
    else:
        print(f"ota: {body.get('state')}: {body.get('reason') or ''}".rstrip(": "))

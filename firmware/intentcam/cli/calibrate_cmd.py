"""``intentcam calibrate``: the browser editor for lines and zones on the privacy-safe plate."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from intentcam.cli.common import add_config_option, nested, settings_from
from intentcam.errors import UserError

NAME = "calibrate"
LIVE_STOP_TIMEOUT_S = 10.0  # a frame takes well under a second; a hung camera read does not


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        NAME,
        help="draw lines and zones in a browser on the privacy-safe view of the scene",
        description="Watch the camera for --seconds to build the background plate (as "
        "`intentcam preview`), then serve one page where lines (click points, flip the "
        "direction) and zones (click a polygon) are drawn on it, with live counts and the "
        "trails of the last minute. Save validates like the set_zones command and writes the "
        "state dir's zones.json, which the daemon loads at its next start. Loopback needs no "
        "token; any other --listen address prints one to put in the page's address.",
    )
    add_config_option(parser)
    parser.add_argument("--source", metavar="S", help="override camera.source")
    parser.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                        help="where to serve (default 127.0.0.1:8080: loopback, no token)")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=10.0, metavar="N",
                        help="how long to watch for the plate (default 10)")  # fmt: skip
    parser.set_defaults(handler=run)


def listen_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UserError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080", exit_code=2)
    return host.strip("[]"), int(port)


def run(args: argparse.Namespace) -> int:
    from intentcam.calibrate.server import prepare, serve, start_live
    from intentcam.detect import build_detector
    from intentcam.preview import refuse_as_a_service

    refuse_as_a_service()  # before anything: not even the camera is opened

    host, port = listen_address(args.listen)
    if not 1 <= args.seconds <= 600:
        raise UserError("--seconds must be between 1 and 600", exit_code=2)
    settings = settings_from(args, nested(camera={"source": args.source}))
    detector = build_detector(settings)
    print(f"calibrate: watching the camera for {args.seconds:g} s to build the plate ...",
          file=sys.stderr)  # fmt: skip
    try:
        editor = prepare(settings, detector, args.seconds, host)
        server = serve(editor, host, port)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"--listen {args.listen}: {exc.strerror or exc}") from None
    stop = threading.Event()
    live = start_live(editor, detector, stop)
    bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])
    address = f"http://{bound_host}:{bound_port}/" + (
        f"?token={editor.token}" if editor.token else ""
    )
    print(f"calibrate: open {address}  (Ctrl-C stops)", flush=True)

    def shutdown(signum: int, _frame: object) -> None:
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        stop.set()
        server.server_close()
        # The camera thread may be inside inference or a decode: exiting under it can abort
        # the interpreter's teardown (SIGABRT), so the process waits for its current frame.
        live.join(timeout=LIVE_STOP_TIMEOUT_S)
        if live.is_alive():
            print("calibrate: the camera did not stop in time; exiting anyway", file=sys.stderr)
    return 0

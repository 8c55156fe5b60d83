"""systemd integration: sd_notify (READY, STATUS, WATCHDOG, STOPPING) fed by the frame loop.

Uses ``systemd-python`` (the ``systemd`` extra) when installed and speaks the ``NOTIFY_SOCKET``
datagram protocol itself otherwise; outside systemd (no ``NOTIFY_SOCKET``) it does nothing.

The watchdog is fed only while frames are really processed: each ping needs a heartbeat newer
than the previous ping. A camera that stops delivering or an inference that hangs stops the pings,
and systemd restarts the service after ``WatchdogSec``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

Send = Callable[[str], bool]


def socket_sender(address: str) -> Send:
    """Send datagrams to ``NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace)."""
    target = "\0" + address[1:] if address.startswith("@") else address

    def send(state: str) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(target)
                sock.sendall(state.encode("utf-8"))
            return True
        except OSError as exc:
            log.debug("sd_notify %r failed: %s", state, exc)
            return False

    return send


def default_sender(environ: dict[str, str] | None = None) -> Send | None:
    """The best sender for this process, or ``None`` when not started by systemd with notify."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return None
    try:
        from systemd import daemon  # type: ignore[import-not-found, attr-defined]

        return lambda state: bool(daemon.notify(state))
    except ImportError:
        return socket_sender(address)


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, if the watchdog is on for this process."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        return int(usec) / 1e6 / 2
    except ValueError:
        return None


@dataclass
class Notifier:
    """Tells systemd how the daemon is doing; call :meth:`tick` often from the frame loop."""

    send: Send | None
    watchdog_s: float | None = None
    status_every_s: float = 5.0
    clock: Callable[[], float] = time.monotonic
    ready: bool = False
    _last_ping: float = field(default=float("-inf"))
    _pinged_progress: float = field(default=float("-inf"))
    _last_status: float = field(default=float("-inf"))

    @classmethod
    def from_environment(cls) -> Notifier:
        return cls(default_sender(), watchdog_interval())

    @property
    def active(self) -> bool:
        return self.send is not None

    def notify_ready(self, status: str) -> None:
        """Models loaded and the camera delivered a frame."""
        if self.send and not self.ready:
            self.send(f"READY=1\nSTATUS={status}")
            log.info("systemd: ready (%s)", status)
        self.ready = True

    def tick(self, last_progress: float, status: Callable[[], str]) -> None:
        """Ping the watchdog if the loop progressed since the last ping; refresh STATUS."""
        if self.send is None:
            return
        now = self.clock()
        if (
            self.watchdog_s is not None
            and now - self._last_ping >= self.watchdog_s
            and last_progress > self._pinged_progress
        ):
            self.send("WATCHDOG=1")
            self._last_ping, self._pinged_progress = now, last_progress
        if self.ready and now - self._last_status >= self.status_every_s:
            self.send(f"STATUS={status()}")
            self._last_status = now

    def stopping(self) -> None:
        if self.send:
            self.send("STOPPING=1\nSTATUS=stopping: flushing the last window and the spool")

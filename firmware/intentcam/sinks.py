"""Where ``intentcam run`` writes its records: stdout or a JSON-lines file (``--sink``)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Protocol, TextIO

from intentcam.errors import UserError
from intentcam.records import Record, encode

__all__ = ["JsonlFileSink", "NullSink", "Record", "Sink", "StreamSink", "open_sink"]


class Sink(Protocol):
    """Where records go. ``line`` is the record already encoded, when the caller has it."""

    def write(self, record: Record, line: str | None = None) -> None: ...

    def close(self) -> None: ...


class StreamSink:
    """JSON lines to a text stream, flushed per record so a reader sees them at once."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        # Records come from the frame loop, command replies from the MQTT thread and OTA
        # states from the install worker: one line at a time.
        self._lock = threading.Lock()

    def write(self, record: Record, line: str | None = None) -> None:
        text = (line or encode(record)) + "\n"
        with self._lock:
            self._stream.write(text)
            self._stream.flush()

    def close(self) -> None:
        self._stream.flush()


class JsonlFileSink:
    """JSON lines appended to a file; each line is flushed, so a crash loses at most one."""

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise UserError(
                f"--sink jsonl:{path}: cannot open for writing ({exc.strerror})"
            ) from None
        self.path = path
        self._lock = threading.Lock()  # several threads write (see StreamSink)

    def write(self, record: Record, line: str | None = None) -> None:
        text = (line or encode(record)) + "\n"
        with self._lock:
            self._file.write(text)
            self._file.flush()

    def close(self) -> None:
        self._file.close()


class NullSink:
    def write(self, record: Record, line: str | None = None) -> None:
        return None

    def close(self) -> None:
        return None


def open_sink(spec: str) -> Sink:
    """``stdout``, ``jsonl:PATH`` or ``none``."""
    if spec == "stdout":
        return StreamSink(sys.stdout)
    if spec == "none":
        return NullSink()
    kind, _, target = spec.partition(":")
    if kind == "jsonl" and target:
        return JsonlFileSink(Path(target))
    raise UserError(f"--sink {spec!r}: expected stdout, none or jsonl:PATH", exit_code=2)

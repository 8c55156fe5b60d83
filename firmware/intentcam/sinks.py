"""Where ``intentcam run`` writes its records: stdout or a JSON-lines file (``--sink``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Protocol, TextIO

from intentcam.errors import UserError

Record = dict[str, Any]


class Sink(Protocol):
    def write(self, record: Record) -> None: ...

    def close(self) -> None: ...


def encode(record: Record) -> str:
    """Compact JSON, one line."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


class StreamSink:
    """JSON lines to a text stream, flushed per record so a reader sees them at once."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, record: Record) -> None:
        self._stream.write(encode(record) + "\n")
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
            raise UserError(f"--sink jsonl:{path}: cannot open for writing ({exc.strerror})") from None
        self.path = path

    def write(self, record: Record) -> None:
        self._file.write(encode(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class NullSink:
    def write(self, record: Record) -> None:
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

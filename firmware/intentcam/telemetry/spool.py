"""The on-disk spool: every telemetry message is stored here before it is published.

SQLite in WAL mode with ``synchronous=FULL``: a message is on disk when :meth:`Spool.put` returns,
so neither a broker outage nor a crash (even SIGKILL) nor a power cut after that point loses it.
A message is deleted only when the broker acknowledged it (:meth:`Spool.ack`, on PUBACK). The
spool also owns the device's ``seq`` counter, so sequence numbers stay monotonic across restarts.
When the size or age limit is exceeded the oldest messages are dropped and counted, and the count
(persisted too) is reported in the health message.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from intentcam.errors import UserError

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    qos INTEGER NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('next_seq', 1), ('dropped', 0);
"""


@dataclass(frozen=True)
class SpooledMessage:
    seq: int
    topic: str
    qos: int
    payload: bytes


class Spool:
    """A bounded, durable FIFO of telemetry messages; safe to use from two threads."""

    def __init__(
        self,
        path: Path,
        max_bytes: int = 64 * 1024 * 1024,
        max_age_s: float = 7 * 86400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            self._bytes = int(
                self._db.execute(
                    "SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM messages"
                ).fetchone()[0]
            )
        except (sqlite3.Error, OSError) as exc:
            raise UserError(f"spool {path}: cannot open ({exc})") from None

    def _meta(self, key: str) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    def put(self, topic: str, qos: int, build: Callable[[int], bytes]) -> int:
        """Store a message; ``build(seq)`` makes its payload with the sequence number it gets.

        Returns the seq. The message is durable when this returns.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = self._meta("next_seq")
                payload = build(seq)
                self._db.execute(
                    "INSERT INTO messages (seq, topic, qos, payload, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (seq, topic, qos, payload, self._clock()),
                )
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq + 1,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._bytes += len(payload)
            self._enforce_limits()
            return seq

    def _enforce_limits(self) -> None:
        """Drop the oldest messages beyond the age or size limit (caller holds the lock)."""
        cutoff = self._clock() - self.max_age_s
        expired = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM messages WHERE created < ?",
            (cutoff,),
        ).fetchone()
        dropped = int(expired[0])
        if dropped:
            self._db.execute("DELETE FROM messages WHERE created < ?", (cutoff,))
            self._bytes -= int(expired[1])
        while self._bytes > self.max_bytes:
            oldest = self._db.execute(
                "SELECT seq, LENGTH(payload) FROM messages ORDER BY seq LIMIT 64"
            ).fetchall()
            if not oldest:
                break
            for seq, size in oldest:
                if self._bytes <= self.max_bytes:
                    break
                self._db.execute("DELETE FROM messages WHERE seq = ?", (seq,))
                self._bytes -= size
                dropped += 1
        if dropped:
            self._db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (dropped,))
            log.warning("spool full or too old: dropped the %d oldest message(s)", dropped)

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[SpooledMessage]:
        """Unacknowledged messages with seq > ``after_seq``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, qos, payload FROM messages WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [SpooledMessage(int(s), t, int(q), bytes(p)) for s, t, q, p in rows]

    def ack(self, seq: int) -> None:
        """The broker has the message: forget it."""
        with self._lock:
            row = self._db.execute(
                "SELECT LENGTH(payload) FROM messages WHERE seq = ?", (seq,)
            ).fetchone()
            if row is not None:
                self._db.execute("DELETE FROM messages WHERE seq = ?", (seq,))
                self._bytes -= int(row[0])

    def count_dropped(self, count: int = 1) -> None:
        with self._lock:
            self._db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (count,))

    def stats(self) -> dict[str, int]:
        """``depth`` (messages), ``bytes`` and ``dropped`` (ever) for the health report."""
        with self._lock:
            depth = int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
            return {"depth": depth, "bytes": self._bytes, "dropped": self._meta("dropped")}

    def close(self) -> None:
        with self._lock:
            self._db.close()

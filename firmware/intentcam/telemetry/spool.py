"""The on-disk spool: every telemetry message is stored here before it is published.

SQLite in WAL mode with ``synchronous=FULL``: a message is on disk when :meth:`Spool.put` returns,
so neither a broker outage nor a crash (even SIGKILL) nor a power cut after that point loses it.
A message is deleted only when the broker acknowledged it (:meth:`Spool.ack`, on PUBACK). The
spool also owns the device's ``seq`` counter, so sequence numbers stay monotonic across restarts.
When the size or age limit is exceeded the oldest messages are dropped and counted, and the count
(persisted too) is reported in the health message.

Faults degrade, they do not crash: when the disk is full, the filesystem turns read-only or an I/O
error strikes, new messages are kept in memory (bounded by ``max_bytes``) with their seq,
:attr:`Spool.fault` says why (the daemon reports ``degraded``), and every later ``put`` tries to
move them to disk again; every ``retry_s`` it also opens the file afresh, because a filesystem that
was repaired or mounted again is not seen through the old connection. A spool that could not be
opened at all starts in memory and moves to disk the same way once the file opens. It is never
opened again while the filesystem it lived on is not mounted: the bare mount point underneath
would take the messages, and the filesystem mounted again would hide them.
A corrupt spool file is moved aside (kept for forensics) and replaced.
``seq`` never goes back: a high-water mark in a separate file (``<spool>.seq``, reserved in blocks
so it costs one write per :data:`SEQ_BLOCK` messages) lets a replaced or rewound spool continue
above every seq ever issued; the skipped numbers show the gateway a gap, which is the truth.
Age is measured on a clock that only advances while the daemon runs (``SpoolClock``), so a
wall-clock jump (a Pi without RTC getting NTP after days) does not expire unsent messages.

The spool also keeps what must survive a restart with the messages: a *state* text stored in the
same transaction as the message that changed it (the day's totals with the ``counts`` message
that carries them, so the two never disagree after a crash), and the counters of the messages
that are not spooled (``status``, ``health``, ...), so their seq continues across restarts too.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from intentcam.durable import atomic_write
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
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('next_seq', 1), ('dropped', 0);
"""


#: Seqs reserved per write of the high-water mark file.
SEQ_BLOCK = 1000


def mount_point(folder: Path) -> Path:
    """The mount point of the filesystem ``folder`` is on."""
    current = folder.resolve()
    while not os.path.ismount(current) and current != current.parent:
        current = current.parent
    return current


class SpoolClock:
    """Seconds that advance only while the process runs, continuing from the spool's newest
    message: ages survive restarts but not wall-clock steps."""

    def __init__(self, origin: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._start = monotonic()
        self._origin = origin

    def __call__(self) -> float:
        return self._origin + (self._monotonic() - self._start)


@dataclass
class _Held:
    """A message kept in memory while the disk cannot take it."""

    seq: int
    topic: str
    qos: int
    payload: bytes
    created: float = field(default=0.0)
    #: The state text this message carries to disk with it (see :meth:`Spool.put`).
    state: str | None = None


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
        clock: Callable[[], float] | None = None,
        retry_s: float = 30.0,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        #: While faulted, how often the spool file is opened afresh.
        self.retry_s = retry_s
        self._retry_at = 0.0
        self._lock = threading.Lock()
        #: Why messages are held in memory right now ("" when the disk takes them).
        self.fault = ""
        self._dropped_in_memory = 0
        self._reserved = 0
        self._spool_id = 0
        self._counter_missing = False
        self._memory_only = False
        self._held: list[_Held] = []
        self._held_bytes = 0
        self._state: str | None = None
        self._numbers: dict[str, int] = {}
        self.hwm_path = path.with_name(path.name + ".seq")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"spool {path}: cannot create its folder ({exc})") from None
        self._mount = mount_point(path.parent)
        try:
            self._open(str(path))
        except sqlite3.OperationalError as exc:  # cannot open or write: storage, not content
            self._open_in_memory(str(exc))
        except sqlite3.DatabaseError as exc:
            try:
                aside = self._move_aside(f"{exc}")
                log.error("spool %s is corrupt (%s); moved aside to %s, starting a new one",
                          path, exc, aside.name)  # fmt: skip
                self._open(str(path))
            except (sqlite3.Error, OSError) as again:
                self._open_in_memory(f"corrupt ({exc}) and not replaceable ({again})")
        except OSError as exc:
            self._open_in_memory(exc.strerror or str(exc))
        newest = self._db.execute("SELECT MAX(created) FROM messages").fetchone()[0]
        self._clock = clock or SpoolClock(float(newest or 0.0))
        self._next = self._continue_seq(self._counter_missing)

    def _open(self, target: str) -> None:
        db, self._counter_missing = self._connect(target)
        self._adopt(db)

    @staticmethod
    def _connect(target: str) -> tuple[sqlite3.Connection, bool]:
        """A checked connection with the schema in place, and whether its seq counter had gone
        missing; the connection is closed again if anything fails."""
        db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        try:
            if target != ":memory:":
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
            # Messages are written once and read once: SQLite's default 2 MB page cache per
            # connection buys nothing here and is resident memory on a 512 MB device.
            db.execute("PRAGMA cache_size = -256")
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("quick_check failed")
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
            counter = (
                db.execute("SELECT 1 FROM meta WHERE key = 'next_seq'")
                if "meta" in tables
                else None
            )
            counter_missing = counter is not None and counter.fetchone() is None
            db.executescript(SCHEMA)
            db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('spool_id', ?)",
                (int.from_bytes(os.urandom(7), "big"),),
            )
        except BaseException:
            db.close()
            raise
        return db, counter_missing

    def _adopt(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._spool_id = self._meta("spool_id")
        self._bytes = int(
            db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM messages").fetchone()[0]
        )

    def _open_in_memory(self, reason: str) -> None:
        """The state filesystem cannot hold the spool (read-only, full, I/O errors): run on, in
        memory, degraded, rather than exit and be restarted into the same failure."""
        self._memory_only = True
        self.fault = f"spool {self.path} cannot be opened ({reason}): holding messages in memory"
        log.error("%s", self.fault)
        self._open(":memory:")

    def _move_aside(self, reason: str) -> Path:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(str(self.path) + suffix)
            if source.exists():
                os.replace(source, Path(str(aside) + suffix))
        return aside

    def _meta(self, key: str) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    def _read_hwm(self) -> tuple[int, int]:
        """(highest seq reserved, id of the spool that reserved it); (0, 0) if absent."""
        try:
            reserved, spool_id = self.hwm_path.read_text(encoding="ascii").split()[:2]
            return int(reserved), int(spool_id)
        except (OSError, ValueError):
            return 0, 0

    def _write_hwm(self, reserved: int) -> None:
        try:
            atomic_write(self.hwm_path, f"{reserved} {self._spool_id}\n".encode("ascii"))
            self._reserved = reserved
        except OSError as exc:  # best effort: the spool's own counter still holds
            log.warning("spool: cannot write %s (%s)", self.hwm_path, exc)

    def _continue_seq(self, counter_missing: bool) -> int:
        """The next seq: the spool's own, unless this spool is not the one that issued the
        last seqs (replaced, recreated) or its counter went back; then above all of them."""
        stored = self._meta("next_seq")
        newest = self._newest_seq() or 0
        reserved, owner = self._read_hwm()
        self._reserved = reserved if owner == self._spool_id else 0
        other_spool = reserved > 0 and owner != self._spool_id
        rewound = stored <= newest or stored < reserved - SEQ_BLOCK + 1 or counter_missing
        if (other_spool or rewound) and reserved + newest > 0:
            jump = max(reserved + 1, newest + 1, stored)
            why = "a different spool issued seqs" if other_spool else "its counter went back"
            log.error(
                "spool: %s up to %d; continuing at %d so no seq is reused (the gateway sees a gap)",
                why,
                max(reserved, newest),
                jump,
            )
            stored = jump
        # Nothing is written here: opening a spool only to look at it (``stats``) must not
        # change it. The first ``put`` stores the counter and reserves the next block.
        return stored

    def put(
        self, topic: str, qos: int, build: Callable[[int], bytes], state: str | None = None
    ) -> int:
        """Store a message; ``build(seq)`` makes its payload with the sequence number it gets.

        Returns the seq. The message is durable when this returns, unless :attr:`fault` says
        the disk refused it: then it is held in memory until the disk takes it again. ``state``
        replaces the saved state (:meth:`saved_state`) in the same transaction.
        """
        with self._lock:
            seq = self._next
            payload = build(seq)
            self._next += 1
            if seq > self._reserved:
                self._write_hwm(seq + SEQ_BLOCK - 1)
            if state is not None:
                self._state = state
            self._held.append(_Held(seq, topic, qos, payload, self._clock(), state))
            self._held_bytes += len(payload)
            self._flush_held()
            if self.fault and time.monotonic() >= self._retry_at:
                self._retry_at = time.monotonic() + self.retry_s
                if self._reopen():
                    self._flush_held()
            return seq

    def _reopen(self) -> bool:
        """Open the spool file afresh, moving what the old connection held into memory first
        (caller holds the lock). False, and nothing changed, while the file still fails."""
        if not os.path.ismount(self._mount):
            log.debug("spool %s: %s is not mounted; not opening it there", self.path, self._mount)
            return False
        try:
            fresh, _ = self._connect(str(self.path))  # a lost counter: ``_next`` stands above it
        except (sqlite3.Error, OSError) as exc:
            log.debug("spool %s: still cannot open (%s)", self.path, exc)
            return False
        if self._memory_only:  # the in-memory spool's messages go to disk with the held ones
            rows = self._db.execute(
                "SELECT seq, topic, qos, payload, created FROM messages ORDER BY seq"
            ).fetchall()
            self._held[:0] = [
                _Held(int(s), t, int(q), bytes(p), float(c)) for s, t, q, p, c in rows
            ]
            self._held_bytes += sum(len(p) for _, _, _, p, _ in rows)
            self._memory_only = False
        try:
            self._db.close()
        except sqlite3.Error:
            pass
        self._adopt(fresh)
        on_disk = self._meta("next_seq"), (self._newest_seq() or 0) + 1
        self._next = max(self._next, *on_disk)
        self._write_hwm(self._next + SEQ_BLOCK - 1)
        log.warning("spool %s: opened again after the fault", self.path)
        return True

    def _newest_seq(self) -> int | None:
        newest = self._db.execute("SELECT MAX(seq) FROM messages").fetchone()[0]
        return None if newest is None else int(newest)

    def _flush_held(self) -> None:
        """Move held messages to disk; on a storage fault keep them (caller holds the lock)."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for held in self._held:
                    self._db.execute(
                        "INSERT OR REPLACE INTO messages (seq, topic, qos, payload, created) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (held.seq, held.topic, held.qos, held.payload, held.created),
                    )
                    if held.state is not None:
                        self._db.execute(
                            "INSERT OR REPLACE INTO state (key, value) VALUES ('saved', ?)",
                            (held.state,),
                        )
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (self._next,))
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            self._bytes += self._held_bytes
            stored = len(self._held)
            self._held, self._held_bytes = [], 0
            self._enforce_limits()
        except (sqlite3.Error, OSError) as exc:
            if not self.fault:
                self._retry_at = time.monotonic() + self.retry_s
                log.error(
                    "spool %s: cannot write (%s); holding messages in memory until it can",
                    self.path,
                    exc,
                )
            if not self._memory_only:
                self.fault = f"spool cannot write: {exc}"
            self._trim_held()
            return
        if self.fault and not self._memory_only:
            log.warning("spool %s: writable again; %d held message(s) stored", self.path, stored)
            self.fault = ""

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:  # the failed statement may already have ended the transaction
            pass

    def _trim_held(self) -> None:
        dropped = 0
        while self._held_bytes > self.max_bytes and self._held:
            oldest = self._held.pop(0)
            self._held_bytes -= len(oldest.payload)
            dropped += 1
        if dropped:
            self._dropped_in_memory += dropped
            log.warning("spool: memory bound reached, dropped the %d oldest message(s)", dropped)

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
        """Unacknowledged messages with seq > ``after_seq``, oldest first (disk, then held)."""
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT seq, topic, qos, payload FROM messages WHERE seq > ? "
                    "ORDER BY seq LIMIT ?",
                    (after_seq, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                log.debug("spool: cannot read (%s)", exc)
                rows = []
            found = [SpooledMessage(int(s), t, int(q), bytes(p)) for s, t, q, p in rows]
            found += [
                SpooledMessage(h.seq, h.topic, h.qos, h.payload)
                for h in self._held
                if h.seq > after_seq
            ]
        return sorted(found, key=lambda message: message.seq)[:limit]

    def ack(self, seq: int) -> None:
        """The broker has the message: forget it."""
        with self._lock:
            for index, held in enumerate(self._held):
                if held.seq == seq:
                    self._held_bytes -= len(held.payload)
                    del self._held[index]
                    return
            try:
                row = self._db.execute(
                    "SELECT LENGTH(payload) FROM messages WHERE seq = ?", (seq,)
                ).fetchone()
                if row is not None:
                    self._db.execute("DELETE FROM messages WHERE seq = ?", (seq,))
                    self._bytes -= int(row[0])
            except sqlite3.Error as exc:
                # Read-only or full: the message stays and is sent again later (a duplicate
                # the gateway ignores by seq), never lost.
                log.debug("spool: cannot delete acknowledged seq %d (%s)", seq, exc)

    def saved_state(self) -> str | None:
        """The state text stored with the newest message that carried one (this run's, or the
        last run's on disk); ``None`` if there is none."""
        with self._lock:
            if self._state is not None:
                return self._state
            try:
                row = self._db.execute("SELECT value FROM state WHERE key = 'saved'").fetchone()
            except sqlite3.Error:
                return None
            return None if row is None else str(row[0])

    def next_number(self, name: str) -> int:
        """The next value of a counter that survives restarts (the seq of a message type that
        is not spooled). While the disk refuses writes it counts on in memory."""
        key = f"counter.{name}"
        with self._lock:
            if name not in self._numbers:
                try:
                    row = self._db.execute(
                        "SELECT value FROM meta WHERE key = ?", (key,)
                    ).fetchone()
                except sqlite3.Error:
                    row = None
                self._numbers[name] = 0 if row is None else int(row[0])
            self._numbers[name] += 1
            number = self._numbers[name]
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, number)
                )
            except sqlite3.Error as exc:
                log.debug("spool: cannot store counter %s (%s)", name, exc)
            return number

    def count_dropped(self, count: int = 1) -> None:
        with self._lock:
            try:
                self._db.execute(
                    "UPDATE meta SET value = value + ? WHERE key = 'dropped'", (count,)
                )
            except sqlite3.Error:
                self._dropped_in_memory += count

    def stats(self) -> dict[str, int]:
        """``depth`` (messages), ``bytes`` and ``dropped`` (ever) for the health report."""
        with self._lock:
            try:
                depth = int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
                dropped = self._meta("dropped")
            except sqlite3.Error:  # an unreadable disk: report what memory knows
                depth, dropped = 0, 0
            return {
                "depth": depth + len(self._held),
                "bytes": self._bytes + self._held_bytes,
                "dropped": dropped + self._dropped_in_memory,
            }

    def close(self) -> None:
        with self._lock:
            lost = len(self._held)
            if self._memory_only:
                lost += int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
            if lost:
                log.error("spool: %d unsent message(s) held in memory are lost at this stop (the "
                          "disk never took them: %s)", lost, self.fault)  # fmt: skip
            try:
                self._db.close()
            except sqlite3.Error as exc:
                log.warning("spool %s: close failed (%s)", self.path, exc)

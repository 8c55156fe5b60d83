"""Anonymous session tokens for confirmed tracks, and re-linking of fragmented tracks.

A token is 128 random bits from ``secrets``, drawn when a track is confirmed; it is never derived
from the image, the box or the person, lives only in this process's memory while the person is
tracked, and is replaced after ``max_session_s`` so that no token follows one person for long.
Nothing here maps a token to anything identifying: the only key is the tracker's own counter.

**Re-linking.** A detector that misses someone for a moment makes the tracker end their track and
start a new one; if that happens across a counting line, two tokens each see half the crossing and
neither counts it. So a newly confirmed track first looks for a token whose track was lost within
the last ``relink_s`` seconds, near enough to have walked here: its foot point within
``relink_margin + relink_speed * gap`` (frame heights, gap in seconds since the old track was last
seen). The nearest such token continues with the new track; the analytics see one path, so every
guarantee of the line logic (hysteresis, once per token and direction) holds unchanged. A lost
token waits ``relink_s`` before its session really ends. Only time and position are used: no
appearance, nothing about the person.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from intentcam.config import TrackerConfig
from intentcam.records import SessionEnd

TOKEN_BYTES = 16


def new_token() -> str:
    """A fresh random session token (128 bits, hex)."""
    return secrets.token_hex(TOKEN_BYTES)


@dataclass(frozen=True)
class RelinkSettings:
    """See the module docstring; the defaults are ``relink_*`` in ``[tracker]``."""

    seconds: float
    speed: float
    margin: float

    @classmethod
    def from_config(cls, config: TrackerConfig) -> RelinkSettings:
        return cls(config.relink_s, config.relink_speed, config.relink_margin)


@dataclass
class _Session:
    """A token, when it started, and where its track was last seen (foot point, view units)."""

    token: str
    started: float
    seen: float
    point: np.ndarray


@dataclass
class SessionTokens:
    """Maps live track ids to their current session token."""

    max_session_s: float = 3600.0
    token_factory: Callable[[], str] = new_token
    #: ``None``: every ended track ends its session at once.
    relink: RelinkSettings | None = None
    #: Tokens handed to a new track instead of a fresh one, since start.
    relinked: int = 0
    _live: dict[int, _Session] = field(default_factory=dict)
    #: Sessions whose track ended; each may still continue with a new track.
    _parked: list[_Session] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self._live) + len(self._parked)

    def assign(
        self, ids: np.ndarray, now: float, feet: np.ndarray | None = None
    ) -> tuple[list[str], list[SessionEnd]]:
        """Tokens for this frame's track ids (new ones drawn or re-linked, old ones rotated when
        too long); returns the tokens and rotated sessions. ``feet`` are the tracks' foot points
        in frame heights (x scaled by the aspect ratio), for re-linking."""
        if feet is None:
            feet = np.zeros((len(ids), 2))
        tokens, ended = [], []
        present = set(ids.tolist())
        for index, track_id in enumerate(ids.tolist()):
            live = self._live.get(track_id)
            if live is not None and now - live.started >= self.max_session_s:
                ended.append(SessionEnd(live.token, live.started, now, "rotated"))
                live = self._live[track_id] = _Session(self.token_factory(), now, now, feet[index])
            if live is None:
                live = self._continue(feet[index], now, present) or _Session(
                    self.token_factory(), now, now, feet[index]
                )
                self._live[track_id] = live
            live.seen, live.point = now, feet[index]
            tokens.append(live.token)
        return tokens, ended

    def _continue(self, point: np.ndarray, now: float, present: set[int]) -> _Session | None:
        """The nearest lost token that could have walked to ``point``, taken over; else None."""
        if self.relink is None or self.relink.seconds <= 0:
            return None
        # (distance, live track id or None, parked index or None) of every candidate.
        candidates: list[tuple[float, int | None, int | None]] = [
            (self._reach(live.point, live.seen, point, now), track_id, None)
            for track_id, live in self._live.items()  # tracks the tracker still holds as lost
            if track_id not in present and live.seen < now
        ]
        candidates += [
            (self._reach(parked.point, parked.seen, point, now), None, index)
            for index, parked in enumerate(self._parked)
        ]
        reachable = [c for c in candidates if np.isfinite(c[0])]
        if not reachable:
            return None
        _, track_id, parked_index = min(reachable, key=lambda candidate: candidate[0])
        self.relinked += 1
        if track_id is not None:
            return self._live.pop(track_id)
        assert parked_index is not None
        return self._parked.pop(parked_index)

    def _reach(self, last: np.ndarray, seen: float, point: np.ndarray, now: float) -> float:
        """Distance to ``point`` if it is reachable from ``last`` in time, else infinity."""
        assert self.relink is not None
        gap = now - seen
        if gap > self.relink.seconds:
            return np.inf
        distance = float(np.hypot(*(point - last)))
        return distance if distance <= self.relink.margin + self.relink.speed * gap else np.inf

    def end(self, ids: np.ndarray, now: float, reason: str = "left") -> list[SessionEnd]:
        """Tracks that ended: their tokens wait ``relink_s`` for a new track (or end now when
        re-linking is off); returns the sessions that really ended."""
        wait = self.relink.seconds if self.relink is not None else 0.0
        ended = []
        for track_id in ids.tolist():
            live = self._live.pop(track_id, None)
            if live is None:
                continue
            if wait > 0 and reason == "left":
                self._parked.append(live)
            else:
                ended.append(SessionEnd(live.token, live.started, now, reason))
        expired = [p for p in self._parked if now - p.seen > wait]
        self._parked = [p for p in self._parked if now - p.seen <= wait]
        ended += [SessionEnd(p.token, p.started, now, "left") for p in expired]
        return ended

    def end_all(self, now: float) -> list[SessionEnd]:
        """Every live and waiting session (shutdown)."""
        ended = [
            SessionEnd(live.token, live.started, now, "shutdown") for live in self._live.values()
        ]
        ended += [SessionEnd(p.token, p.started, now, "shutdown") for p in self._parked]
        self._live.clear()
        self._parked.clear()
        return ended

"""Anonymous session tokens for confirmed tracks.

A token is 128 random bits from ``secrets``, drawn when a track is confirmed; it is never derived
from the image, the box or the person, lives only in this process's memory while the person is
tracked, and is replaced after ``max_session_s`` so that no token follows one person for long.
Nothing here maps a token to anything identifying: the only key is the tracker's own counter.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from intentcam.records import SessionEnd

TOKEN_BYTES = 16


def new_token() -> str:
    """A fresh random session token (128 bits, hex)."""
    return secrets.token_hex(TOKEN_BYTES)


@dataclass
class SessionTokens:
    """Maps live track ids to their current session token."""

    max_session_s: float = 3600.0
    token_factory: Callable[[], str] = new_token
    _tokens: dict[int, tuple[str, float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._tokens)

    def assign(self, ids: np.ndarray, now: float) -> tuple[list[str], list[SessionEnd]]:
        """Tokens for this frame's track ids (new ones drawn, old ones rotated when too long)."""
        tokens, ended = [], []
        for track_id in ids.tolist():
            current = self._tokens.get(track_id)
            if current is not None and now - current[1] >= self.max_session_s:
                ended.append(SessionEnd(current[0], current[1], now, "rotated"))
                current = None
            if current is None:
                current = (self.token_factory(), now)
                self._tokens[track_id] = current
            tokens.append(current[0])
        return tokens, ended

    def end(self, ids: np.ndarray, now: float, reason: str = "left") -> list[SessionEnd]:
        """Forget the tokens of tracks that ended."""
        ended = []
        for track_id in ids.tolist():
            current = self._tokens.pop(track_id, None)
            if current is not None:
                ended.append(SessionEnd(current[0], current[1], now, reason))
        return ended

    def end_all(self, now: float) -> list[SessionEnd]:
        return self.end(np.array(list(self._tokens), dtype=np.int64), now, "shutdown")

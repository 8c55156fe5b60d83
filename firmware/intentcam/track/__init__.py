"""Tracking: ByteTrack-style association on a time-based Kalman filter, and session tokens."""

from intentcam.track.bytetrack import ByteTracker, TrackerSettings, TrackFrame
from intentcam.track.sessions import SessionEnd, SessionTokens, new_token

__all__ = [
    "ByteTracker",
    "SessionEnd",
    "SessionTokens",
    "TrackFrame",
    "TrackerSettings",
    "new_token",
]

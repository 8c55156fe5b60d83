"""Store analytics of one view, frame by frame: footfall lines, zones, heatmap, intent signals.

Windows over time are not kept here: :mod:`intentcam.aggregator` turns these events into records.
"""

from intentcam.analytics.lines import Crossing, LineCounter
from intentcam.analytics.scene import Analytics, EndedSession, FootPoints, FrameEvents
from intentcam.analytics.zones import Visit, ZoneTracker

__all__ = [
    "Analytics",
    "Crossing",
    "EndedSession",
    "FootPoints",
    "FrameEvents",
    "LineCounter",
    "Visit",
    "ZoneTracker",
]

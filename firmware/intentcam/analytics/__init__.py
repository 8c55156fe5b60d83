"""Store analytics: footfall lines, zones, heatmap, intent signals, per-window aggregation."""

from intentcam.analytics.engine import Analytics, iso
from intentcam.analytics.lines import Crossing, LineCounter
from intentcam.analytics.zones import Visit, ZoneTracker

__all__ = ["Analytics", "Crossing", "LineCounter", "Visit", "ZoneTracker", "iso"]

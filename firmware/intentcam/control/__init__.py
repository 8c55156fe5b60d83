"""The control plane: validated commands from MQTT, and the live zones they change."""

from intentcam.control.commands import COMMANDS, ControlPlane, Reply
from intentcam.control.geometry_store import GeometryStore

__all__ = ["COMMANDS", "ControlPlane", "GeometryStore", "Reply"]

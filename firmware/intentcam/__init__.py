"""intentcam: the firmware daemon of a retail smart camera.

Frames in, anonymous store analytics out. See DESIGN.md for the flow of one frame.
"""

__version__ = "0.1.0"

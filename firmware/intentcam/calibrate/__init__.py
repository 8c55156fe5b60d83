"""The installer's browser editor for lines and zones (``intentcam calibrate``)."""

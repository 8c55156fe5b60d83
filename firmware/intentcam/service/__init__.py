"""Running as a system service: sd_notify and watchdog, journald logging."""

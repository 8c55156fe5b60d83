"""Logging: to journald (structured fields) under systemd, to stderr otherwise."""

from __future__ import annotations

import logging
import os
import sys


def under_journald() -> bool:
    """systemd connected stderr to the journal (``JOURNAL_STREAM`` names stderr's device:inode)."""
    stream = os.environ.get("JOURNAL_STREAM")
    if not stream:
        return False
    try:
        stat = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return stream == f"{stat.st_dev}:{stat.st_ino}"


class SyslogPrefixFormatter(logging.Formatter):
    """``<6>message``: journald turns the prefix into the PRIORITY field (no python-systemd needed)."""

    PRIORITIES = {
        logging.DEBUG: 7,
        logging.INFO: 6,
        logging.WARNING: 4,
        logging.ERROR: 3,
        logging.CRITICAL: 2,
    }

    def format(self, record: logging.LogRecord) -> str:
        priority = self.PRIORITIES.get(record.levelno, 6)
        return f"<{priority}>{record.name}: {super().format(record)}"


class RedactingFilter(logging.Filter):
    """Secrets never reach a log line: URL passwords and secret query values become ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        from intentcam.secrets import redact_text

        message = record.getMessage()
        cleaned = redact_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def configure(level: str, *, native_journal: bool = True) -> str:
    """Set up the root logger; returns where logs go (``journald``, ``journal-stderr``, ``stderr``).

    Under journald, systemd-python's JournalHandler (structured fields) is used when installed
    and ``native_journal``; otherwise stderr lines with syslog priority prefixes.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(getattr(logging, level))
    if under_journald() and native_journal:
        try:
            from systemd.journal import JournalHandler  # type: ignore[import-not-found]

            # Structured fields: PRIORITY, LOGGER (via SYSLOG_IDENTIFIER), CODE_FILE/LINE, ...
            journal = JournalHandler(SYSLOG_IDENTIFIER="intentcam")
            journal.addFilter(RedactingFilter())
            root.addHandler(journal)
            return "journald"
        except ImportError:
            pass
    if under_journald():
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(SyslogPrefixFormatter("%(message)s"))
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)
        return "journal-stderr"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    return "stderr"

"""Errors a user can act on.

Anything raised as a :class:`UserError` is printed by the CLI as one line (no traceback) and
turned into its exit code. Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_USAGE = 2


class UserError(Exception):
    """A problem with the user's input, files or environment, described in one line."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(UserError):
    """Invalid configuration. May carry several lines, one per bad field."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class ModelError(UserError):
    """A model file is missing, unreadable, or not what the manifest says."""


class SourceError(UserError):
    """A frame source cannot be opened or read."""

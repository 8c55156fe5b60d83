"""Options and helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from intentcam.config import Settings, load_config


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML config file (default: /etc/intentcam/intentcam.toml if present)",
    )


def settings_from(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> Settings:
    """Load the config named on the command line, apply flag overrides, set the log level."""
    settings = load_config(args.config, overrides=overrides)
    if args.log_level is None:
        configure_level(settings.logging.level)
    return settings


def nested(**sections: dict[str, Any]) -> dict[str, Any]:
    """Config overrides from flags, leaving out the ones not given (``None``)."""
    result = {}
    for section, values in sections.items():
        given = {key: value for key, value in values.items() if value is not None}
        if given:
            result[section] = given
    return result


def configure_level(level: str) -> None:
    """Apply the config's log level (a ``--log-level`` flag wins and is set earlier)."""
    logging.getLogger().setLevel(getattr(logging, level))

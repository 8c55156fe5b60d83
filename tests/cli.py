"""Running the ``intentcam`` command as a user would, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any


def intentcam_argv(*args: str) -> list[str]:
    """The command line of ``python -m intentcam ARGS`` in this interpreter."""
    return [sys.executable, "-m", "intentcam", *args]


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 240, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m intentcam ARGS`` with a clean ``INTENTCAM_*`` environment, capturing output."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("INTENTCAM_")}
    full_env.update(env or {})
    return subprocess.run(
        intentcam_argv(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        **kwargs,
    )

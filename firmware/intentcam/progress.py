"""Progress reporting for long work (benchmarks, evaluation): one signature, a bar or nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from tqdm import tqdm

#: Wraps an iterator of ``total`` items of work named ``label``; may return it unchanged.
Progress = Callable[[Iterator[Any], int, str], Iterator[Any]]


def no_progress(items: Iterator[Any], total: int, label: str) -> Iterator[Any]:
    return items


def progress_bar(items: Iterator[Any], total: int, label: str) -> Iterator[Any]:
    """A frame progress bar on stderr (silent when stderr is not a terminal)."""
    return tqdm(items, total=total, desc=label, unit="frame", leave=False, disable=None)

"""Fetching a bundle: local paths as they are, HTTP(S) resumable, bounded and timed out.

A download goes to ``<dir>/<key>.partial``; when the link drops, the next attempt asks for the
rest with an HTTP ``Range`` header (a server that answers 200 instead of 206 is read from the
start again). The size limit is checked against ``Content-Length`` before anything is written and
against the bytes received while writing. A hash given by the sender (the MQTT command's sha256,
the DDI artifact's sha1) is checked when the file is complete; the bundle signature is checked
afterwards anyway.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from intentcam.models.store import digest_of
from intentcam.ota.bundle import BundleError

log = logging.getLogger(__name__)
CHUNK = 1 << 16


@dataclass(frozen=True)
class DownloadLimits:
    max_bytes: int = 256 * 1024 * 1024
    timeout_s: float = 30.0
    #: Attempts after the first one, each resuming where the last stopped.
    retries: int = 5
    backoff_s: float = 0.5


@dataclass
class Download:
    """One bundle to fetch and what the sender said about it."""

    url: str
    sha256: str | None = None
    sha1: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _check_hashes(path: Path, job: Download) -> None:
    for algorithm, expected in (("sha256", job.sha256), ("sha1", job.sha1)):
        if expected and digest_of(path, algorithm) != expected.lower():
            raise BundleError("download", f"{algorithm} of the download does not match {expected}")


def fetch(
    job: Download,
    folder: Path,
    limits: DownloadLimits = DownloadLimits(),
    progress: Callable[[int, int | None], None] | None = None,
    opener: urllib.request.OpenerDirector | None = None,
) -> Path:
    """The bundle as a local file: the path itself, or a completed download in ``folder``."""
    parsed = urllib.parse.urlparse(job.url)
    if parsed.scheme in ("", "file"):
        path = Path(urllib.request.url2pathname(parsed.path) if parsed.scheme else job.url)
        if not path.is_file():
            raise BundleError("download", f"{path}: no such file")
        if path.stat().st_size > limits.max_bytes:
            raise BundleError("download", f"{path}: larger than {limits.max_bytes} bytes")
        _check_hashes(path, job)
        return path
    if parsed.scheme not in ("http", "https"):
        raise BundleError("download", f"unsupported URL scheme {parsed.scheme!r} (http, https)")
    folder.mkdir(parents=True, exist_ok=True)
    key = job.sha256 or hashlib.sha256(job.url.encode()).hexdigest()
    partial = folder / f"{key[:32]}.partial"
    opener = opener or urllib.request.build_opener()
    last_problem = "no attempt"
    for attempt in range(limits.retries + 1):
        if attempt:
            time.sleep(limits.backoff_s * attempt)
        try:
            if _attempt(job, partial, limits, opener, progress):
                break
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            if isinstance(exc, urllib.error.HTTPError) and exc.code < 500 and exc.code != 416:
                partial.unlink(missing_ok=True)
                raise BundleError("download", f"server answered {exc.code} {exc.reason}") from None
            last_problem = str(getattr(exc, "reason", None) or exc) or type(exc).__name__
            log.warning(
                "ota: download attempt %d of %s failed at %d bytes: %s",
                attempt + 1,
                job.url,
                partial.stat().st_size if partial.exists() else 0,
                last_problem,
            )
    else:
        raise BundleError(
            "download", f"gave up after {limits.retries + 1} attempts: {last_problem}"
        )
    done = partial.with_suffix(".swu")
    os.replace(partial, done)
    try:
        _check_hashes(done, job)
    except BundleError:
        done.unlink(missing_ok=True)
        raise
    return done


def _attempt(
    job: Download,
    partial: Path,
    limits: DownloadLimits,
    opener: urllib.request.OpenerDirector,
    progress: Callable[[int, int | None], None] | None,
) -> bool:
    """One request; True when the file is complete."""
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(job.url, headers=dict(job.headers))
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = opener.open(request, timeout=limits.timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # asked past the end: what we have is the whole file
            return True
        raise
    with response:
        status = response.status
        if have and status != 206:
            have = 0  # the server ignored the range: start over
        length = response.headers.get("Content-Length")
        total = (have + int(length)) if length and length.isdigit() else None
        if total is not None and total > limits.max_bytes:
            raise BundleError(
                "download", f"{total} bytes announced, more than the {limits.max_bytes}-byte limit"
            )
        with partial.open("ab" if have else "wb") as out:
            received = have
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                received += len(block)
                if received > limits.max_bytes:
                    out.close()
                    partial.unlink(missing_ok=True)
                    raise BundleError(
                        "download", f"more than the {limits.max_bytes}-byte limit received"
                    )
                out.write(block)
                if progress is not None:
                    progress(received, total)
            out.flush()
            os.fsync(out.fileno())
        if total is not None and received < total:
            raise http.client.IncompleteRead(b"", total - received)
    return True

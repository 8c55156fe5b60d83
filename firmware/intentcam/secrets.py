"""Redacting secrets from anything the daemon shows: replies, status, logs.

Credentials hide in URLs (``rtsp://user:pa/ss@word@cam``: a password may hold ``/`` and ``@``;
the host is what follows the last ``@`` of the token) and in query strings (``?pwd=``,
``&token=``). Named secret settings (the MQTT password, the DDI token) are replaced in
:func:`intentcam.config.redacted`; this module catches the rest wherever text goes out.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
# scheme://user:PASSWORD@host... where PASSWORD runs to the last "@" of the token.
_URL_CREDENTIALS = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)\S*@(?=[^\s@]*)")
_QUERY_SECRET = re.compile(
    r"([?&;](?:pass|passwd|password|pwd|token|access_token|auth|key|apikey|api_key|secret|sig)=)"
    r"[^&;#\s]*",
    re.IGNORECASE,
)


def redact_text(text: str) -> str:
    """``text`` with URL passwords and secret query values replaced by ``***``."""
    if "://" not in text and "=" not in text:
        return text
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m.group(1)}{MASK}", text)


def redact_data(value: Any) -> Any:
    """Every string inside JSON-like data passed through :func:`redact_text`."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: redact_data(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_data(item) for item in value]
    return value

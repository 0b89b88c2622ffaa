"""Keeping secrets out of logs, traces and metrics.

URLs often carry credentials and personal data in their query strings, fragments and userinfo
(`?token=...`, `#access_token=...`, `user:pass@`). What leaves the broker as telemetry keeps
only scheme, host, port and path.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_URL = re.compile(r"\b(?:https?|wss?|ftp)://[^\s\"'<>]+", re.IGNORECASE)


def redact_url(url: str) -> str:
    """`url` without userinfo, query or fragment (marked `?…` / `#…` when there was one)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable url>"
    if not parts.scheme or not host:
        return url.split("?", 1)[0].split("#", 1)[0]
    if ":" in host:
        host = f"[{host}]"
    redacted = f"{parts.scheme}://{host}{port}{parts.path}"
    if parts.query:
        redacted += "?…"
    if parts.fragment:
        redacted += "#…"
    return redacted


def redact_text(text: str) -> str:
    """Every URL inside `text` (an error message, say) redacted."""
    return _URL.sub(lambda match: redact_url(match.group(0)), text)

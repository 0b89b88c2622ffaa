"""Structured logs: one JSON object per line (or plain text), with the `extra` fields included.

URLs in log lines (messages, extra fields, tracebacks) lose their query strings, fragments and
credentials unless the operator turns `redact_urls` off. The `websockets` library never logs
below INFO, whatever the level: its DEBUG lines carry attach request paths (`?token=`), the
secret paths of served browsers, and every frame an attached client sends or receives.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from broker.common.redact import redact_text

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, redact: bool = True) -> None:
        super().__init__()
        self._redact = redact_text if redact else _same

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": self._redact(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = self._redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = self._redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class RedactingFormatter(logging.Formatter):
    """The plain-text format, redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def _same(text: str) -> str:
    return text


def configure(level: str, fmt: str, redact_urls: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    text_format = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    if fmt == "json":
        handler.setFormatter(JsonFormatter(redact_urls))
    elif redact_urls:
        handler.setFormatter(RedactingFormatter(text_format))
    else:
        handler.setFormatter(logging.Formatter(text_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("websockets").setLevel(max(logging.INFO, root.level))

"""A browser message's envelope, read without parsing the message: Chromium writes `id` (an
answer) or `method` (an event) first and `sessionId` last, so a large answer or event can be
routed, and its id and session rewritten, by splicing its first and last bytes. A message
that does not look so is parsed as a whole."""

from __future__ import annotations

import re
from dataclasses import dataclass

# The bytes of a message's start and end the envelope is read from.
ENVELOPE_BYTES = 512
_ID = re.compile(rb'\{"id":(\d{1,16}),')
_METHOD = re.compile(rb'\{"method":"([A-Za-z]{1,64}\.[A-Za-z]{1,128})",')
_SESSION = re.compile(rb',"sessionId":"([0-9A-Za-z_.-]{1,128})"\}\Z')


# Answers the CDP hub reads (and may rewrite) before a client has them, whatever their size.
_READ_ANSWERS = (
    "Target.attachToTarget",
    "Target.attachToBrowserTarget",
    "Target.getTargets",
    "Target.getTargetInfo",
)
# Read too when small: answers handing IO streams (hub.py `_given_streams`) and the events the
# hub watches (downloads' progress, a trace's stream). A large message is relayed unread.
_STREAM_ANSWERS = (
    "Fetch.takeResponseBodyAsStream",
    "IO.resolveBlob",
    "Network.takeResponseBodyForInterceptionAsStream",
    "Page.printToPDF",
)
_READ_EVENTS = ("Browser.downloadProgress", "Page.downloadProgress", "Tracing.tracingComplete")
LARGE_BYTES = 256 * 1024


def read_by_hub(method: str, answer: bool, size: int) -> bool:
    """Whether the hub parses a `size`-byte answer to `method` (or event `method`) before a
    client has it; anything else is relayed by its envelope alone, its id and session
    spliced."""
    if answer and method in _READ_ANSWERS:
        return True
    if method.startswith("Target."):
        return answer is False or size <= LARGE_BYTES
    if size > LARGE_BYTES:
        return False
    return method in (_STREAM_ANSWERS if answer else _READ_EVENTS)


@dataclass(frozen=True)
class Envelope:
    id: int | None  # an answer's
    method: str | None  # an event's
    session: str | None
    body_from: int  # where the message goes on after `{"id":N,` (0 for an event)
    body_to: int  # where `,"sessionId":...}` starts, or the closing brace without one


def read_envelope(head: bytes, tail: bytes, size: int) -> Envelope | None:
    """The envelope of a `size`-byte message from its first and last bytes; None if it is not
    written as Chromium writes them."""
    session = None
    found = _SESSION.search(tail)
    if found is not None:
        session = found.group(1).decode()
        body_to = size - (len(tail) - found.start())
    elif tail.endswith(b"}"):
        body_to = size - 1
    else:
        return None
    ident = _ID.match(head)
    if ident is not None:
        return Envelope(int(ident.group(1)), None, session, ident.end(), body_to)
    method = _METHOD.match(head)
    if method is not None:
        return Envelope(None, method.group(1).decode(), session, 0, body_to)
    return None


def respliced(raw: bytes, envelope: Envelope, ident: int | None, session: str | None) -> bytes:
    """`raw` with its id replaced by `ident` and its session by `session` (None: no sessionId)."""
    start = b'{"id":%d,' % ident if ident is not None else b""
    end = b',"sessionId":"%s"}' % session.encode() if session is not None else b"}"
    return b"".join((start, memoryview(raw)[envelope.body_from : envelope.body_to], end))

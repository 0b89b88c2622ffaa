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

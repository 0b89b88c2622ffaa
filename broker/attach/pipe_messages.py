"""The browser's end of the pipe, read as it arrives: NUL-ended messages, each held only up to a
bound chosen from its first bytes (a longer one is read on and dropped: its envelope and size
come back as `Oversized`).

A complete message is handed to the hub's `inline` handler in the very callback that read it,
while nothing waits before it (no task is woken per message: one loop wake-up less on every
answer and event); one the handler will not take there (it must be parsed in a worker thread),
and every message after it, waits in order for `next`, the hub's reading task. Reading pauses
while more than MAX_QUEUED_BYTES wait there."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from broker.attach.envelope import ENVELOPE_BYTES

log = logging.getLogger("broker.attach")

# The largest message the broker reads whole: an answer to its own Playwright (a full-page
# screenshot of max_screenshot_pixels, 25 Mpx, is at most ~134 MB of base64).
MAX_BROWSER_MESSAGE_BYTES = 256 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024  # a message bigger than this is measured against its bound
MAX_QUEUED_BYTES = 2 * CHUNK_BYTES  # what waits for the reading task before reads pause


@dataclass(frozen=True)
class Oversized:
    """A message over its bound, dropped as it was read: its first and last bytes, its size."""

    head: bytes
    tail: bytes
    size: int


Message = bytes | Oversized
Bound = Callable[[bytes], int]
Inline = Callable[[Message], bool]  # True: handled; False: leave it (and what follows) to `next`


def _held(message: Message) -> int:
    return len(message) if isinstance(message, bytes) else len(message.head) + len(message.tail)


class PipeMessages(asyncio.Protocol):
    def __init__(self) -> None:
        self.bound: Bound = lambda head: MAX_BROWSER_MESSAGE_BYTES
        self.inline: Inline | None = None
        self._transport: asyncio.ReadTransport | None = None
        self._queue: deque[Message] = deque()
        self._queued = 0
        self._paused = False
        self._busy = False  # the reading task holds a message it took from the queue
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None
        self._start()

    def _start(self) -> None:
        self._parts: list[bytes] = []
        self._head = b""
        self._tail = b""
        self._size = 0
        self._limit = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.ReadTransport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        start = 0
        while (end := data.find(b"\0", start)) >= 0:
            self._add(data[start:end])
            self._ended()
            start = end + 1
        if start < len(data):
            self._add(data[start:])

    def eof_received(self) -> bool:
        self._close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._close()

    def _close(self) -> None:
        self._closed = True
        self._wake()

    def _add(self, piece: bytes) -> None:
        if len(self._head) < ENVELOPE_BYTES:
            self._head += piece[: ENVELOPE_BYTES - len(self._head)]
        self._size += len(piece)
        if self._size > CHUNK_BYTES - ENVELOPE_BYTES:  # it may be measured: its last bytes
            self._tail = (self._tail + piece[-ENVELOPE_BYTES:])[-ENVELOPE_BYTES:]
        if self._limit < 0 and self._size > CHUNK_BYTES:
            self._limit = min(self.bound(self._head), MAX_BROWSER_MESSAGE_BYTES)
        if 0 <= self._limit < self._size:
            self._parts.clear()
        else:
            self._parts.append(piece)

    def _ended(self) -> None:
        message: Message
        if 0 <= self._limit < self._size:
            message = Oversized(self._head, self._tail, self._size)
        else:
            parts = self._parts
            message = parts[0] if len(parts) == 1 else b"".join(parts)
        self._start()
        if not self._queue and not self._busy and self.inline is not None:
            try:
                if self.inline(message):
                    return
            except Exception:
                log.exception("a message from the browser could not be handled")
                return
        self._queue.append(message)
        self._queued += _held(message)
        if self._queued > MAX_QUEUED_BYTES and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next(self) -> Message | None:
        """The next message the inline handler left, or None once the browser closed its end
        (and nothing is left)."""
        self._busy = False
        while not self._queue:
            if self._closed:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None
        message = self._queue.popleft()
        self._queued -= _held(message)
        if self._paused and self._queued <= CHUNK_BYTES and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        self._busy = True
        return message

"""One WebSocket client of a hub: its messages in, the hub's answers and events out through a
bounded send buffer (a client that does not read is disconnected, never buffered for ever).

A lease's tenant clients are read at most READ_BYTES_PER_S on average between them
(READ_BURST_BYTES at once), counted in bytes: past that, their reads pause (backpressure: the
socket's buffer fills and TCP stops the sender), so the parse of their messages, at C speed,
takes a bounded share of the broker's one event loop.
After a large message the loop runs its other work before the next one is read, even when the
next is already buffered."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from broker.attach.clients import HubClient
from broker.attach.hubs import AttachHub
from broker.attach.inbox import RelayConnection
from broker.attach.rules import BadMessage

log = logging.getLogger(__name__)

MAX_UNSENT_BYTES = 64 * 1024 * 1024
READ_BYTES_PER_S = 4 * 1024 * 1024  # a tenant's client, on average (docs/security.md)
READ_BURST_BYTES = 8 * 1024 * 1024  # two messages of the default attach_max_message_bytes
YIELD_BYTES = 64 * 1024  # a message this large lets the loop run other work after it
CLOSE_BAD_MESSAGE = 1007
CLOSE_TOO_SLOW = 1008
CLOSE_INTERNAL_ERROR = 1011


class SocketPeer:
    """A message for the client is written to its socket at once when nothing waits before it
    (the writer task idle, the socket's write buffer empty): one wake-up of a task less per
    message. Otherwise it is queued for the writer task, which waits for the socket to drain."""

    def __init__(self, socket: ServerConnection, max_unsent: int = MAX_UNSENT_BYTES) -> None:
        self._socket = socket
        self._max_unsent = max_unsent
        self._queue: deque[str | bytes] = deque()
        self._unsent = 0
        self._wake = asyncio.Event()
        self._sending = False  # the writer task is handing a message to the socket
        self.overflowed = False
        self._closing: tuple[int, str] | None = None

    def close(self, code: int, reason: str) -> None:
        """Close the socket once what is queued has been sent (a hub whose client's way to
        the browser went away)."""
        self._closing = (code, reason)
        self._wake.set()

    def deliver(self, text: str | bytes) -> None:
        if self.overflowed or self._sent_now(text):
            return
        self._queue.append(text)
        self._unsent += len(text)
        if self._unsent > self._max_unsent:
            self.overflowed = True
            self._queue.clear()
        self._wake.set()

    def _sent_now(self, text: str | bytes) -> bool:
        """Write `text` as a text frame now if nothing waits before it (what websockets' own
        `send` does when it need not wait for the socket to drain)."""
        socket = self._socket
        if (
            self._queue
            or self._sending
            or self._closing is not None
            or getattr(socket, "send_in_progress", None)  # a fragmented send (websockets 17)
            or socket.protocol.state is not State.OPEN
            or socket.transport.get_write_buffer_size()
        ):
            return False
        socket.protocol.send_text(text.encode() if isinstance(text, str) else text)
        socket.send_data()
        return True

    async def write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.overflowed:
                await self._socket.close(CLOSE_TOO_SLOW, "client does not read its messages")
                return
            while self._queue:
                text = self._queue.popleft()
                self._unsent -= len(text)
                self._sending = True
                try:
                    await self._socket.send(text, text=True)  # CDP is text, even as bytes
                finally:
                    self._sending = False
            if self._closing is not None:
                await self._socket.close(*self._closing)
                return


class ReadBudget:
    """Bytes a client may send: `rate` a second, at most `burst` saved. `spend` says how long
    to pause reading so that what was read stays within them."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.at = now

    def spend(self, size: int, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate) - size
        self.at = now
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


# One budget per lease (its hub), shared by all its tenant's clients: one that reconnects, or
# opens attach_max_clients sockets, gets no fresh burst nor more bytes a second.
_BUDGETS: weakref.WeakKeyDictionary[AttachHub, ReadBudget] = weakref.WeakKeyDictionary()


async def relay(
    socket: RelayConnection,
    hub: AttachHub,
    client: HubClient,
    peer: SocketPeer,
    on_message: Callable[[], None] | None = None,
    budget: ReadBudget | None = None,
) -> str:
    """Relay until the socket closes; why it closed ("client closed", "bad message: ...").
    Each message goes to the hub in the callback that read it (`broker/attach/inbox.py`)."""
    writer = asyncio.get_running_loop().create_task(peer.write_forever())
    cause = "client closed"
    if budget is None and not client.trusted:
        budget = _BUDGETS.get(hub)
        if budget is None:
            budget = _BUDGETS[hub] = ReadBudget(
                READ_BYTES_PER_S, READ_BURST_BYTES, time.monotonic()
            )

    def handle(raw: str | bytes) -> float | None:
        nonlocal cause
        try:
            hub.receive(client, raw)
        except BadMessage as exc:
            cause = f"bad message: {exc}"
            socket.inbox.refuse(CLOSE_BAD_MESSAGE, str(exc)[:120])
            return None
        except Exception:  # a fault of the broker's, never the client's: logged, not relayed
            log.exception("the attach hub failed on a client's message")
            cause = "internal error"
            socket.inbox.refuse(CLOSE_INTERNAL_ERROR, cause)
            return None
        if on_message is not None:
            on_message()
        size = len(raw) if isinstance(raw, bytes) or raw.isascii() else len(raw.encode())
        pause = 0.0 if budget is None else budget.spend(size, time.monotonic())
        return pause if pause > 0 or size >= YIELD_BYTES else None

    try:
        socket.inbox.start(handle)
        await socket.wait_closed()
    finally:
        socket.inbox.stop()
        hub.detach(client)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
            await writer
    if peer.overflowed or socket.inbox.unread:
        cause = "client did not read"
    elif cause == "client closed" and socket.inbox.refusal:  # refused before the hub saw it
        cause = f"bad message: {socket.inbox.refusal}"
    return cause

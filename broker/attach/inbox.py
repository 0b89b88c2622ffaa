"""A client's messages handed to the relay in the callback that read them off the socket.

websockets queues each message it reads and wakes the task that awaits it: one more turn of the
event loop, and a task resumed, per message a client sends, on the path of every protocol round
trip through the broker. `RelayConnection` assembles each whole message itself and calls the
relay's handler at once. The handler says when to stop reading for a while (the client's byte
budget, or a large message after which the loop runs its other work first); reading then pauses
at the socket (backpressure, as websockets' own queue does) and the messages already read wait,
in order, until it resumes."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import Event

# Messages held before the relay starts (a client may send as soon as its handshake is done,
# while the broker still attaches it to the lease's browser): past this many, reading pauses.
MAX_EARLY_MESSAGES = 16
# Frames in one message (websockets' own bound: max_size counts payload bytes only, so without it
# empty continuation frames would pile up for ever).
MAX_FRAGMENTS = 4096
# Pongs websockets writes for a client's pings, whatever it reads: past this much unsent, the
# client does not read, and its connection is dropped.
MAX_UNSENT_ON_PING = 64 * 1024 * 1024
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009

Message = str | bytes


@dataclass(frozen=True)
class Refusal:
    """In the queue, where the message that earned it stood: the messages before it are handed
    on first."""

    code: int
    reason: str


# A message's handler: None to read on, or how long (seconds, 0 for one loop turn) to pause.
Handler = Callable[[Message], float | None]


class Inbox:
    """Whole messages from one connection, to its handler, in order."""

    def __init__(self, connection: ServerConnection) -> None:
        self._connection = connection
        self._handler: Handler | None = None
        self._waiting: deque[Message | Refusal] = deque()
        self._parts: list[bytes] = []
        self._text = False
        self._paused = False  # reading paused by this inbox
        self._stopped = False
        self._refused = False  # a refusal is queued or made: no frame is taken after it
        self._closing: asyncio.Task[None] | None = None
        self.refusal = ""  # why the inbox closed the connection, if it did
        self.unread = False  # the connection was dropped: its client did not read its pongs

    def frame(self, frame: Frame) -> None:
        if self._stopped or self._refused:
            return
        if frame.opcode is not Opcode.CONT:
            self._parts = []
            self._text = frame.opcode is Opcode.TEXT
        self._parts.append(bytes(frame.data))
        if len(self._parts) > MAX_FRAGMENTS:
            self._queue(Refusal(CLOSE_TOO_BIG, f"a message of over {MAX_FRAGMENTS} fragments"))
            return
        if not frame.fin:
            return  # websockets bounds the whole message by max_size as it parses
        data = b"".join(self._parts)
        self._parts = []
        if not self._text:
            self._queue(data)
            return
        try:
            self._queue(data.decode())
        except UnicodeDecodeError:
            self._queue(Refusal(CLOSE_INVALID_DATA, "invalid UTF-8 in a text message"))

    def _queue(self, item: Message | Refusal) -> None:
        if isinstance(item, Refusal):
            self._refused = True
        if self._handler is None or self._paused or self._waiting:
            self._waiting.append(item)
            if self._handler is None and len(self._waiting) >= MAX_EARLY_MESSAGES:
                self._pause()
            return
        self._take(item)

    def start(self, handler: Handler) -> None:
        """Hand the messages held so far, and each one read from now on, to `handler`."""
        self._handler = handler
        self._resume()

    def stop(self) -> None:
        """No message is handed on any more (the relay ended, or refused the client). Reading
        goes on, so that the closing handshake is read."""
        self._stopped = True
        self._handler = None
        self._waiting.clear()
        self._parts = []
        self._paused = False
        self._connection.transport.resume_reading()  # (a no-op unless paused, or once closed)

    def refuse(self, code: int, reason: str) -> None:
        """Stop, and close the connection with `code` and `reason`."""
        self.stop()
        if self._closing is None:
            self.refusal = reason
            self._closing = asyncio.get_running_loop().create_task(
                self._connection.close(code, reason)
            )

    def _take(self, item: Message | Refusal) -> None:
        if isinstance(item, Refusal):
            self.refuse(item.code, item.reason)
            return
        assert self._handler is not None
        pause = self._handler(item)
        if pause is not None and not self._stopped:
            self._pause()
            asyncio.get_running_loop().call_later(pause, self._resume)

    def _pause(self) -> None:
        if not self._paused:
            self._paused = True
            self._connection.transport.pause_reading()

    def _resume(self) -> None:
        if self._stopped:
            return
        self._paused = False
        try:
            while self._waiting and not self._paused and not self._stopped:
                self._take(self._waiting.popleft())
        finally:
            if not self._paused and not self._stopped:
                self._connection.transport.resume_reading()


class RelayConnection(ServerConnection):
    """A server connection whose data messages go to its `inbox`, not websockets' queue: the
    relay's `async for` is replaced by `inbox.start(handler)` and waiting for the close."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.inbox = Inbox(self)
        self.max_unsent_on_ping = MAX_UNSENT_ON_PING  # (the relay's bound on its messages)

    def process_event(self, event: Event) -> None:
        if isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            self.inbox.frame(event)
            return
        if (
            isinstance(event, Frame)
            and event.opcode is Opcode.PING
            and self.transport.get_write_buffer_size() > self.max_unsent_on_ping
        ):
            self.inbox.stop()
            self.inbox.unread = True
            self.transport.abort()  # its pongs were already queued: nothing else bounds them
            return
        super().process_event(event)

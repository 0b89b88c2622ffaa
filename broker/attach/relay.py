"""One WebSocket client of a hub: its messages in, the hub's answers and events out through a
bounded send buffer (a client that does not read is disconnected, never buffered for ever)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from broker.attach.clients import HubClient
from broker.attach.hubs import AttachHub
from broker.attach.rules import BadMessage

MAX_UNSENT_BYTES = 64 * 1024 * 1024
CLOSE_BAD_MESSAGE = 1007
CLOSE_TOO_SLOW = 1008


class SocketPeer:
    def __init__(self, socket: ServerConnection, max_unsent: int = MAX_UNSENT_BYTES) -> None:
        self._socket = socket
        self._max_unsent = max_unsent
        self._queue: deque[str | bytes] = deque()
        self._unsent = 0
        self._wake = asyncio.Event()
        self.overflowed = False
        self._closing: tuple[int, str] | None = None

    def close(self, code: int, reason: str) -> None:
        """Close the socket once what is queued has been sent (a hub whose client's way to
        the browser went away)."""
        self._closing = (code, reason)
        self._wake.set()

    def deliver(self, text: str | bytes) -> None:
        if self.overflowed:
            return
        self._queue.append(text)
        self._unsent += len(text)
        if self._unsent > self._max_unsent:
            self.overflowed = True
            self._queue.clear()
        self._wake.set()

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
                await self._socket.send(text, text=True)  # CDP is text, even as bytes
            if self._closing is not None:
                await self._socket.close(*self._closing)
                return


async def relay(
    socket: ServerConnection,
    hub: AttachHub,
    client: HubClient,
    peer: SocketPeer,
    on_message: Callable[[], None] | None = None,
) -> str:
    """Relay until the socket closes; why it closed ("client closed", "bad message: ...")."""
    writer = asyncio.get_running_loop().create_task(peer.write_forever())
    cause = "client closed"
    try:
        async for raw in socket:
            try:
                hub.receive(client, raw)
            except BadMessage as exc:
                cause = f"bad message: {exc}"
                await socket.close(CLOSE_BAD_MESSAGE, str(exc)[:120])
                break
            if on_message is not None:
                on_message()
    except ConnectionClosed:
        pass
    finally:
        hub.detach(client)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
            await writer
    if peer.overflowed:
        cause = "client did not read"
    return cause

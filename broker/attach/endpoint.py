"""The broker's own way in: a one-shot loopback WebSocket, at a path nobody else knows, for the
broker's Playwright (`connect_over_cdp`). It stops listening as soon as that one connection is
made, and closes it when the browser goes away, so Playwright sees its browser disconnect."""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import secrets
from collections.abc import Callable

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from broker.attach.hub import CdpHub
from broker.attach.inbox import RelayConnection
from broker.attach.relay import SocketPeer, relay

log = logging.getLogger("broker.attach")


class TrustedEndpoint:
    def __init__(self, hub: CdpHub, on_closed: Callable[[], object]) -> None:
        self._hub = hub
        self._on_closed = on_closed
        self._path = "/devtools/browser/" + secrets.token_urlsafe(32)
        self._server: Server | None = None
        self._taken = False
        self.url = ""

    async def open(self) -> str:
        self._server = await serve(
            self._serve,
            "127.0.0.1",
            0,
            process_request=self._check,
            compression=None,
            create_connection=RelayConnection,
            max_size=None,  # the broker's own Playwright
            ping_interval=None,
        )
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}{self._path}"
        return self.url

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        if self._taken or not secrets.compare_digest(request.path, self._path):
            return connection.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
        return None  # taken once upgraded: a request that never upgrades takes nothing

    async def _serve(self, socket: ServerConnection) -> None:
        assert isinstance(socket, RelayConnection)
        assert self._server is not None
        if self._taken:
            socket.inbox.stop()
            await socket.close(1008, "taken")
            return
        self._taken = True
        self._server.close(close_connections=False)  # one connection, then no port at all
        peer = SocketPeer(socket, max_unsent=1 << 62)
        socket.max_unsent_on_ping = 1 << 62  # the broker's own Playwright
        try:
            client = await self._hub.attach(peer, trusted=True)
        except Exception:
            socket.inbox.stop()
            log.exception("the broker's own client could not attach")
            self._on_closed()
            return
        relaying = asyncio.ensure_future(relay(socket, self._hub, client, peer))
        gone = asyncio.ensure_future(self._hub.gone.wait())
        try:
            await asyncio.wait([relaying, gone], return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not relaying.done():
                await socket.close(1001, "browser closed")
                with contextlib.suppress(Exception):
                    await relaying
            self._on_closed()

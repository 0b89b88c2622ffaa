"""The attach edge: a WebSocket server where a tenant's client reaches its lease's browser.

`/cdp/<lease id>?token=<attach token>` (or `/devtools/browser/<lease id>?token=...`, checked the
same way; `/playwright/<lease id>?token=...` for a lease served over Playwright's protocol, whose
client must be of the server's Playwright version, 428 if not; `/bidi/<lease id>?token=...` for
an attach-only Firefox lease over WebDriver BiDi, one client at a time) is checked before the
upgrade: an unknown or ended lease, or one of the other protocol, is answered 404 and a wrong
token 401, with no upgrade; once the broker drains, every new connection is answered 503 (the
leases it holds go on, and their connected clients with them, until they end). What a lease id
and token lead to is the resolver's business (the wiring's, which knows the lease table); this
edge knows only hubs, bounds and sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from broker.attach.bidi_hub import BidiHub
from broker.attach.bounds import AttachLimits
from broker.attach.hub import HubError
from broker.attach.hubs import AttachHub
from broker.attach.inbox import RelayConnection
from broker.attach.playwright_hub import PlaywrightHub
from broker.attach.relay import SocketPeer, relay

log = logging.getLogger("broker.attach")

CLOSE_BROWSER_GONE = 1011
# After the browser's pipe closes, how long the lease's own end (and its reason) may take to
# come before the socket is closed anyway: a crash ends the lease, and this is the fallback.
GONE_GRACE_S = 5.0
MAX_ID_CHARS = 128
MAX_TOKEN_CHARS = 256
# What comes before the lease id: `/cdp/<id>`, the URL grants carry, and `/devtools/browser/<id>`,
# the shape chromedp's remote allocator takes for a browser's socket as it is (any other URL it
# turns into a `/json/version` request, which is not served). Both are checked alike.
PATHS = {
    ("", "cdp"): "cdp",
    ("", "devtools", "browser"): "cdp",
    ("", "playwright"): "playwright",  # a lease served over Playwright's own protocol
    ("", "bidi"): "bidi",  # an attach-only Firefox lease over WebDriver BiDi
}


@dataclass(frozen=True)
class ConnectionInfo:
    lease_id: str
    protocol: str
    user_agent: str
    peer: str


@dataclass(frozen=True)
class ConnectionStats:
    messages_in: int
    messages_out: int
    bytes_in: int
    bytes_out: int
    refused: int
    cause: str  # why the socket closed


@dataclass
class AttachGrant:
    """What a valid lease id and token lead to."""

    hub: AttachHub
    ended: asyncio.Future[tuple[int, str]]  # (close code, reason) once the lease has ended
    touch: Callable[[], None]  # a message arrived: activity on the lease
    opened: Callable[[ConnectionInfo], Callable[[ConnectionStats], None]]  # -> when it closes


# (lease id, attach token) -> the grant, or the HTTP status to refuse the upgrade with.
Resolver = Callable[[str, str], AttachGrant | http.HTTPStatus]


class AttachServer:
    def __init__(
        self,
        resolve: Resolver,
        host: str,
        port: int,
        limits: AttachLimits,
        ssl_context: ssl.SSLContext | None = None,
        draining: Callable[[], bool] = lambda: False,
        gone_grace_s: float = GONE_GRACE_S,
    ) -> None:
        self._gone_grace_s = gone_grace_s
        self._resolve = resolve
        self._draining = draining
        self._host = host
        self._port = port
        self._limits = limits
        self._ssl = ssl_context
        self._server: Server | None = None
        # Handshakes under way: what each connection's request was granted. An entry leaves when
        # the connection is upgraded or closes (an HTTP request that never upgrades, a failed
        # handshake); each holds one of its lease's max_clients until its client is attached.
        self._grants: dict[ServerConnection, tuple[AttachGrant, ConnectionInfo]] = {}
        self._opening: Counter[AttachHub] = Counter()
        self.port = 0

    async def start(self) -> int:
        self._server = await serve(
            self._serve,
            self._host,
            self._port,
            process_request=self._check,
            process_response=self._checked,
            compression=None,
            create_connection=RelayConnection,
            max_size=self._limits.max_message_bytes,
            ssl=self._ssl,
            server_header=None,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close(code=1001, reason="broker stopped")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        if self._draining():
            return connection.respond(
                http.HTTPStatus.SERVICE_UNAVAILABLE, "the broker is draining: no new connections\n"
            )
        url = urlsplit(request.path)
        parts = url.path.split("/")
        tokens = parse_qs(url.query).get("token", [])
        protocol = PATHS.get(tuple(parts[:-1]))
        if protocol is None or len(tokens) != 1:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
        lease_id, token = parts[-1], tokens[0]
        if not lease_id or len(lease_id) > MAX_ID_CHARS or len(token) > MAX_TOKEN_CHARS:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
        grant = self._resolve(lease_id, token)
        if isinstance(grant, http.HTTPStatus):
            text = "no such attachable lease\n" if grant == 404 else "refused\n"
            return connection.respond(grant, text)
        if grant.hub.protocol != protocol:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "no such attachable lease\n")
        agent = request.headers.get("User-Agent", "")[:200]
        if isinstance(grant.hub, PlaywrightHub) and (why := grant.hub.version_refusal(agent)):
            return connection.respond(http.HTTPStatus.PRECONDITION_REQUIRED, why + "\n")
        limit = self._limits.max_clients
        if isinstance(grant.hub, BidiHub):
            limit = min(limit, grant.hub.max_clients)  # one BiDi session, one client
        if grant.hub.attached(trusted=False) + self._opening[grant.hub] >= limit:
            return connection.respond(
                http.HTTPStatus.TOO_MANY_REQUESTS,
                f"{limit} clients are attached to this lease already\n",
            )
        remote = connection.remote_address
        peer = f"{remote[0]}:{remote[1]}" if remote else ""
        self._grants[connection] = (grant, ConnectionInfo(lease_id, protocol, agent, peer))
        self._opening[grant.hub] += 1
        connection.connection_lost_waiter.add_done_callback(lambda _: self._forget(connection))
        return None

    def _checked(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> Response | None:
        if response.status_code != http.HTTPStatus.SWITCHING_PROTOCOLS:
            self._forget(connection)  # not a WebSocket handshake after all
        return None

    def _forget(self, connection: ServerConnection) -> None:
        found = self._grants.pop(connection, None)
        if found is not None:
            self._release_slot(found[0].hub)

    def _release_slot(self, hub: AttachHub) -> None:
        self._opening[hub] -= 1
        if self._opening[hub] <= 0:
            del self._opening[hub]

    async def _browser_gone(self, grant: AttachGrant) -> None:
        """Returns once the browser's pipe has closed and the lease has not ended within the
        grace (it should have: a crash ends the lease, with its reason)."""
        await grant.hub.gone.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(grant.ended), self._gone_grace_s)

    async def _serve(self, socket: ServerConnection) -> None:
        assert isinstance(socket, RelayConnection)
        found = self._grants.pop(socket, None)
        if found is None:
            socket.inbox.stop()
            return
        grant, info = found
        try:
            if grant.ended.done():
                socket.inbox.stop()  # (so that the closing handshake is read)
                await socket.close(*grant.ended.result())
                return
            peer = SocketPeer(socket)
            try:
                client = await grant.hub.attach(peer, trusted=False)
            except (HubError, TimeoutError):
                socket.inbox.stop()
                await socket.close(CLOSE_BROWSER_GONE, "the lease's browser is gone")
                return
            except BaseException:
                socket.inbox.stop()
                raise
        finally:
            self._release_slot(grant.hub)
        closed = grant.opened(info)
        relaying = asyncio.ensure_future(relay(socket, grant.hub, client, peer, grant.touch))
        gone = asyncio.ensure_future(self._browser_gone(grant))
        try:
            either: list[asyncio.Future[object]] = [relaying, grant.ended, gone]  # type: ignore[list-item]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            cause = "broker stopped"
            if relaying.done() and not relaying.cancelled():
                cause = relaying.result()
            elif grant.ended.done():
                code, cause = grant.ended.result()
                with contextlib.suppress(Exception):
                    await socket.close(code, cause)
            elif gone.done() and not gone.cancelled():
                cause = "the lease's browser is gone"
                log.warning("a lease's browser went away and the lease did not end")
                with contextlib.suppress(Exception):
                    await socket.close(CLOSE_BROWSER_GONE, cause)
            if not relaying.done():
                relaying.cancel()
            with contextlib.suppress(BaseException):
                await relaying
            grant.hub.detach(client)
            closed(
                ConnectionStats(
                    client.messages_in,
                    client.messages_out,
                    client.bytes_in,
                    client.bytes_out,
                    client.refused,
                    cause,
                )
            )

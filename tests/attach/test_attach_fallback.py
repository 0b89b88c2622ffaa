"""The fallback behind the one release path: the browser's pipe closes (a crash) and its lease
should end, closing the socket with its reason; if the lease does not end within the grace,
the edge closes the client's socket anyway (1011), so no client is left on a dead browser.
A browser SIGKILLed under a real broker is tests/attach/test_attach_cdp.py's (the lease ends,
4005 engine_crashed)."""

from __future__ import annotations

import asyncio
import http
from dataclasses import dataclass
from typing import Any

import websockets

from broker.attach.bounds import AttachLimits
from broker.attach.server import AttachGrant, AttachServer, ConnectionInfo, ConnectionStats
from tests.attach.support import closed_with


@dataclass(eq=False)
class FakeClient:
    trusted: bool = False
    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    refused: int = 0


class FakeHub:
    """A hub whose browser can go away."""

    protocol = "cdp"  # the path it is reached on

    def __init__(self) -> None:
        self.gone = asyncio.Event()
        self.clients: set[FakeClient] = set()

    def attached(self, trusted: bool) -> int:
        return len(self.clients)

    async def attach(self, peer: Any, trusted: bool) -> FakeClient:
        client = FakeClient()
        self.clients.add(client)
        return client

    def detach(self, client: FakeClient) -> None:
        self.clients.discard(client)

    def receive(self, client: FakeClient, raw: str | bytes) -> None:
        pass


async def _serve(
    hub: FakeHub, ended: asyncio.Future[tuple[int, str]], causes: list[str]
) -> AttachServer:
    def opened(info: ConnectionInfo) -> Any:
        def closed(stats: ConnectionStats) -> None:
            causes.append(stats.cause)

        return closed

    grant = AttachGrant(hub, ended, lambda: None, opened)  # type: ignore[arg-type]

    def resolve(lease_id: str, token: str) -> AttachGrant | http.HTTPStatus:
        return grant

    server = AttachServer(resolve, "127.0.0.1", 0, AttachLimits(), gone_grace_s=0.5)
    await server.start()
    return server


async def _gone(lease_ends: tuple[int, str] | None) -> tuple[tuple[int, str], list[str]]:
    """A connected client's browser goes away, and its lease ends with `lease_ends` or not at
    all: how the client's socket closed, and the causes the edge recorded."""
    hub = FakeHub()
    ended: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
    causes: list[str] = []
    server = await _serve(hub, ended, causes)
    try:
        url = f"ws://127.0.0.1:{server.port}/cdp/lease-1?token=t"
        async with websockets.connect(url) as socket:
            await asyncio.sleep(0.2)
            hub.gone.set()
            if lease_ends is not None:
                ended.set_result(lease_ends)
            closed = await closed_with(socket)
        for _ in range(100):
            if causes:
                break
            await asyncio.sleep(0.02)
        assert not hub.clients
        return closed, causes
    finally:
        await server.close()


async def test_a_gone_browser_closes_the_socket_when_the_lease_does_not_end() -> None:
    closed, causes = await _gone(None)
    assert closed == (1011, "the lease's browser is gone")
    assert causes == ["the lease's browser is gone"]


async def test_the_leases_own_reason_wins_within_the_grace() -> None:
    closed, causes = await _gone((4005, "lease ended: engine_crashed"))
    assert closed == (4005, "lease ended: engine_crashed")
    assert causes == ["lease ended: engine_crashed"]

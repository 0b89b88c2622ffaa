"""The attach edge holds nothing for a request that never upgrades, and counts handshakes under
way against attach_max_clients."""

from __future__ import annotations

import asyncio
import http
from typing import Any

import websockets
from websockets.exceptions import InvalidStatus

from broker.attach.bounds import AttachLimits
from broker.attach.clients import HubClient
from broker.attach.server import AttachGrant, AttachServer, ConnectionInfo, ConnectionStats


class FakeHub:
    """Attaches a client after a while, as a browser's answer would."""

    protocol = "cdp"  # the path it is reached on

    def __init__(self) -> None:
        self.clients: set[HubClient] = set()

    def attached(self, trusted: bool) -> int:
        return len(self.clients)

    async def attach(self, peer: Any, trusted: bool) -> HubClient:
        await asyncio.sleep(0.3)
        client = HubClient(peer, trusted, None, root="root")
        self.clients.add(client)
        return client

    def detach(self, client: HubClient) -> None:
        self.clients.discard(client)

    def receive(self, client: HubClient, raw: str | bytes) -> None:
        pass


async def _server(max_clients: int = 4) -> tuple[AttachServer, FakeHub]:
    hub = FakeHub()
    ended: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    def opened(info: ConnectionInfo) -> Any:
        def closed(stats: ConnectionStats) -> None:
            pass

        return closed

    grant = AttachGrant(hub, ended, lambda: None, opened)  # type: ignore[arg-type]

    def resolve(lease_id: str, token: str) -> AttachGrant | http.HTTPStatus:
        return grant if token == "good" else http.HTTPStatus.UNAUTHORIZED

    server = AttachServer(resolve, "127.0.0.1", 0, AttachLimits(max_clients=max_clients))
    await server.start()
    return server, hub


async def _plain_get(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /cdp/lease-1?token=good HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


async def test_requests_that_never_upgrade_leave_nothing_held() -> None:
    server, _ = await _server()
    try:
        for _ in range(20):
            answers = await asyncio.gather(*(_plain_get(server.port) for _ in range(25)))
            assert all(b" 426 " in a.split(b"\r\n")[0] for a in answers), answers[0][:80]
        for _ in range(50):
            if len(server._grants) == 0:
                break
            await asyncio.sleep(0.05)
        assert len(server._grants) == 0
        assert not server._opening
        # and the lease's slots are all free: a client still connects
        async with websockets.connect(f"ws://127.0.0.1:{server.port}/cdp/lease-1?token=good"):
            pass
    finally:
        await server.close()


async def test_simultaneous_upgrades_are_counted_against_max_clients() -> None:
    server, hub = await _server(max_clients=4)
    url = f"ws://127.0.0.1:{server.port}/cdp/lease-1?token=good"

    async def attempt() -> int | websockets.ClientConnection:
        try:
            return await websockets.connect(url)
        except InvalidStatus as refused:
            return refused.response.status_code

    try:
        results = await asyncio.gather(*(attempt() for _ in range(12)))
        opened = [r for r in results if not isinstance(r, int)]
        assert len(opened) == 4, results
        assert [r for r in results if isinstance(r, int)] == [429] * 8
        for socket in opened:
            await socket.close()
        for _ in range(50):
            if not hub.clients and not server._opening:
                break
            await asyncio.sleep(0.05)
        assert not hub.clients and not server._opening and len(server._grants) == 0
        again = await attempt()
        assert not isinstance(again, int)
        await again.close()
    finally:
        await server.close()


async def _status(port: int, path: str) -> int:
    try:
        socket = await websockets.connect(f"ws://127.0.0.1:{port}{path}")
    except InvalidStatus as refused:
        return refused.response.status_code
    await socket.close()
    return 101


async def test_devtools_browser_path_is_checked_as_cdp_is() -> None:
    """chromedp's remote allocator connects to a `/devtools/browser/` URL as it is."""
    server, hub = await _server()
    try:
        statuses = {
            path: await _status(server.port, path)
            for path in (
                "/devtools/browser/lease-1?token=good",
                "/cdp/lease-1?token=good",
                "/devtools/browser/lease-1?token=bad",
                "/devtools/browser/lease-1",
                "/devtools/browser/lease-1?token=good&token=good",
                "/devtools/browser/?token=good",
                "/devtools/browser/lease-1/x?token=good",
                "/devtools/browser/../cdp/lease-1?token=good",
                "/devtools/page/lease-1?token=good",
                "/devtools/lease-1?token=good",
                "/x/devtools/browser/lease-1?token=good",
                "//devtools/browser/lease-1?token=good",
                "/json/version?token=good",
                "/devtools/browser/" + "a" * 129 + "?token=good",
            )
        }
        assert statuses == {
            "/devtools/browser/lease-1?token=good": 101,
            "/cdp/lease-1?token=good": 101,
            "/devtools/browser/lease-1?token=bad": 401,
            **{path: 404 for path in list(statuses)[3:]},
        }
        for _ in range(50):
            if not hub.clients and not server._opening and not server._grants:
                break
            await asyncio.sleep(0.05)
        assert not hub.clients and not server._opening and not server._grants
    finally:
        await server.close()

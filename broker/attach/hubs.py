"""What the attach edge needs of a lease's hub, whatever protocol its clients speak: a CdpHub
(one pipe to the browser, shared by its clients) or a PlaywrightHub (a connection of each
client's own to the browser's Playwright server)."""

from __future__ import annotations

import asyncio
from typing import Protocol

from broker.attach.clients import HubClient, Peer


class AttachHub(Protocol):
    protocol: str  # "cdp" or "playwright": the edge's path must name it
    gone: asyncio.Event  # the browser has gone away

    def attached(self, trusted: bool) -> int: ...

    async def attach(self, peer: Peer, trusted: bool) -> HubClient: ...

    def detach(self, client: HubClient) -> None: ...

    def receive(self, client: HubClient, raw: str | bytes) -> None:
        """Judge and relay one message; raises BadMessage for what is not one at all."""
        ...

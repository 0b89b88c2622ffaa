"""The review's attack tests: a `playwright` lease's raw client with a page open."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from browserbroker import AttachProtocol
from tests.attach.playwright_support import RawPlaywright, raw_playwright
from tests.conftest import BrokerFactory


@asynccontextmanager
async def playwright_frame(
    broker_factory: BrokerFactory, **settings: Any
) -> AsyncIterator[tuple[RawPlaywright, str]]:
    """A raw client of a fresh lease and its new page's main frame; the lease ends after."""
    broker = await broker_factory(**settings)
    lease = await broker.client.acquire(attach=AttachProtocol.PLAYWRIGHT, ttl=120)
    try:
        async with raw_playwright(lease.connect_url) as client:
            _, _, frame = await client.new_page(await client.initialize())
            yield client, frame
    finally:
        await lease.release()

"""Review attack on every attach relay's message parsing: a client's message is parsed on the
broker's one event loop, with a Python hook for every number and object, so one tenant's
frames under attach_max_message_bytes stall the whole daemon (every lease, every client, the
API) for about a second each (measured: 0.4 to 1.5 s on 2 busy cores; 8 of them, 4 to 8 s)."""

from __future__ import annotations

import asyncio
import time

import pytest

from browserbroker import AttachProtocol
from tests.attach.playwright_support import raw_playwright
from tests.conftest import BrokerFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MESSAGE_BYTES = 4 * 1024 * 1024  # the default attach_max_message_bytes
MESSAGES = 8
STALL_S = 1.0  # what the loop may stop for in all while MESSAGES are read (a fixed relay:
# well under 0.1 s, parsing off the loop or bounding the count of numbers and objects)


def _numbers_message(ident: int) -> str:
    """A valid-looking call under the size bound: two bytes per parse_int hook call."""
    head = f'{{"id":{ident},"guid":"nobody","method":"x","params":{{"a":['
    count = (MESSAGE_BYTES - len(head) - 64) // 2
    return head + "1," * count + "1]}}"


@pytest.mark.xfail(
    strict=False,  # a fast idle machine may stay under the bound without the hole being closed
    reason="rules.strict_object parses a client's message on the event loop "
    "(relay.py: hub.receive), a hook call per number: a 4 MiB frame stalls the daemon ~1 s",
)
async def test_review_a_client_message_does_not_stall_the_daemon(
    broker_factory: BrokerFactory,
) -> None:
    broker = await broker_factory()
    lease = await broker.client.acquire(attach=AttachProtocol.PLAYWRIGHT, ttl=120)
    gaps: list[float] = []
    ticking = True

    async def tick() -> None:
        last = time.monotonic()
        while ticking:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async with raw_playwright(lease.connect_url) as client:
        await client.initialize()
        ticker = asyncio.ensure_future(tick())
        for ident in range(100, 100 + MESSAGES):
            await client.socket.send(_numbers_message(ident))
        for _ in range(MESSAGES):  # each is refused by its unknown guid, once parsed
            answer = await client.call("nobody", "close", {})
            assert answer is not None
        ticking = False
        await ticker
    await lease.release()
    stalled = sum(gap for gap in gaps if gap > 0.05)
    assert stalled < STALL_S, f"the daemon's loop stopped for {stalled:.2f} s in all"

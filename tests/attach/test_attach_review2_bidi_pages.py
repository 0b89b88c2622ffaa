"""Second review of the BiDi page bound (`broker/attach/bidi_pages.py`): the hub counts pages
from a subscription of its own, which a client's `session.unsubscribe` by event names may
remove; the hub subscribes again once it sees that unsubscribe answered for the client. A
client that sends it and leaves at once is not there for its answer; the hub subscribes again
all the same (before 23f2e7f it did not: the next client's popups were never counted or closed,
7 pages open with a bound of 3)."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.attach import bidi_support
from tests.attach.bidi_support import bidi_lease, firefox_broker, first_context
from tests.attach.support import RawClient, raw
from tests.conftest import BrokerFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MAX_TARGETS = 3
POPUPS = 6
WAIT_S = 60.0  # the most the bound may take to close pages on a loaded machine
SETTLE_S = 3.0

EVENTS = {"events": ["browsingContext.contextCreated", "browsingContext.contextDestroyed"]}
UNSUBSCRIBE = {"id": 1, "method": "session.unsubscribe", "params": EVENTS}


async def _top_level(client: RawClient) -> int:
    tree = await client.call("browsingContext.getTree", {"maxDepth": 0})
    return len(tree["result"]["contexts"])


async def _open_popups(client: RawClient) -> None:
    context = await first_context(client)
    popups = {
        "expression": f"for (let i = 0; i < {POPUPS}; i++) window.open('about:blank'); 1",
        "target": {"context": context},
        "awaitPromise": False,
        "userActivation": True,
    }
    answer = await client.call("script.evaluate", popups)
    assert answer.get("type") == "success", answer


async def _pages_settle(client: RawClient) -> int:
    for _ in range(int(WAIT_S * 5)):
        if await _top_level(client) <= MAX_TARGETS:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(SETTLE_S)
    return await _top_level(client)


async def test_review2_popups_stay_bounded_after_a_client_unsubscribes_by_events(
    broker_factory: BrokerFactory,
) -> None:
    broker = await firefox_broker(broker_factory, attach_max_targets=MAX_TARGETS)
    lease = await bidi_lease(broker, ttl=120)
    try:
        async with raw(lease.connect_url) as client:
            answer = await client.call("session.unsubscribe", EVENTS)
            assert answer.get("type") in ("success", "error"), answer
            await asyncio.sleep(1.0)  # the hub subscribes again
            await _open_popups(client)
            assert await _pages_settle(client) <= MAX_TARGETS
    finally:
        await lease.release()
    await broker.broker.leases.wait_all_closed()
    await bidi_support.no_browser_left()


async def test_review2_popups_stay_bounded_after_a_client_unsubscribes_and_leaves(
    broker_factory: BrokerFactory,
) -> None:
    broker = await firefox_broker(broker_factory, attach_max_targets=MAX_TARGETS)
    lease = await bidi_lease(broker, ttl=120)
    try:
        async with raw(lease.connect_url) as client:
            await first_context(client)
            await client.socket.send(json.dumps(UNSUBSCRIBE))  # and leave before its answer
        await asyncio.sleep(2.0)
        async with raw(lease.connect_url) as client:
            await _open_popups(client)
            pages = await _pages_settle(client)
            assert pages <= MAX_TARGETS, f"{pages} pages open (attach_max_targets {MAX_TARGETS})"
    finally:
        await lease.release()
    await broker.broker.leases.wait_all_closed()
    await bidi_support.no_browser_left()

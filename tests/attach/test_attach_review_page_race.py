"""Review attacks on the page bounds of the BiDi and Playwright-protocol relays: pages are
counted when the browser has made them, so commands sent together all pass the count before
any of them lands, and one burst opens many times attach_max_targets pages."""

from __future__ import annotations

import asyncio
import json

import pytest

from browserbroker import AttachProtocol
from tests.attach.bidi_support import bidi_lease, firefox_broker
from tests.attach.playwright_support import raw_playwright
from tests.attach.support import raw
from tests.conftest import BrokerFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MAX_TARGETS = 3
SENT = 12  # at once, within the default burst and unanswered-call bounds


BIDI_HOLE = (
    "bidi_hub._create counts pages with its own getTree before relaying each "
    "browsingContext.create; creates sent together all see the same count"
)
PLAYWRIGHT_HOLE = (
    "playwright_hub._bounds counts pages from the server's __create__ events; newPage "
    "calls sent together all see the same count"
)


@pytest.mark.xfail(strict=False, reason=BIDI_HOLE)
async def test_review_bidi_creates_sent_together_stay_bounded(
    broker_factory: BrokerFactory,
) -> None:
    broker = await firefox_broker(broker_factory, attach_max_targets=MAX_TARGETS)
    lease = await bidi_lease(broker, ttl=120)
    async with raw(lease.connect_url) as client:
        for ident in range(1, SENT + 1):
            command = {"id": ident, "method": "browsingContext.create", "params": {"type": "tab"}}
            await client.socket.send(json.dumps(command))
        answered = 0
        while answered < SENT:
            message = json.loads(await asyncio.wait_for(client.socket.recv(), 30))
            answered += "id" in message
        tree = await client.call("browsingContext.getTree", {"maxDepth": 0})
        pages = len(tree["result"]["contexts"])
    await lease.release()
    assert pages <= MAX_TARGETS, f"{pages} pages open (attach_max_targets {MAX_TARGETS})"


@pytest.mark.xfail(strict=False, reason=PLAYWRIGHT_HOLE)
async def test_review_playwright_new_pages_sent_together_stay_bounded(
    broker_factory: BrokerFactory,
) -> None:
    broker = await broker_factory(attach_max_targets=MAX_TARGETS)
    lease = await broker.client.acquire(attach=AttachProtocol.PLAYWRIGHT, ttl=120)
    async with raw_playwright(lease.connect_url) as client:
        browser = await client.initialize()
        context = (await client.call(browser, "newContext", {}))["result"]["context"]["guid"]
        for ident in range(1000, 1000 + SENT):
            call = {"id": ident, "guid": context, "method": "newPage", "params": {}}
            await client.socket.send(json.dumps(call))
        answered = 0
        while answered < SENT:
            message = json.loads(await asyncio.wait_for(client.socket.recv(), 60))
            if message.get("method") == "__create__":
                created = message["params"]
                client.objects[created["guid"]] = (created["type"], created["initializer"])
            answered += message.get("id", 0) >= 1000
        pages = len(client.of_type("Page"))
    await lease.release()
    assert pages <= MAX_TARGETS, f"{pages} pages open (attach_max_targets {MAX_TARGETS})"

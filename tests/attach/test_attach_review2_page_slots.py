"""Second review of the CDP page bound's reservations (`Target.createTarget` counted as a page
until its answer, broker/attach/hub.py): a create the browser refuses, and one whose client
left before its answer, give their slot back; none is taken twice or freed twice. Chromium's
own chrome:// page targets (the omnibox popup of each window), which a client sees and may
attach to, run no WebUI there (policy blocks it: the page is chrome-error://chromewebdata/) and
still refuse a file: navigation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.attach.support import RawClient, raw
from tests.conftest import BrokerFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MAX_TARGETS = 3  # the lease's own page, and two more


async def _pages(client: RawClient) -> list[dict[str, Any]]:
    """The page targets a client sees, leaving out Chromium's own chrome:// ones (its
    omnibox popup, one per window), which the bound does not count."""
    targets = await client.call("Target.getTargets")
    return [
        t
        for t in targets["result"]["targetInfos"]
        if t["type"] == "page" and not t["url"].startswith("chrome://")
    ]


async def test_review2_failed_and_orphaned_creates_give_their_slot_back(
    broker_factory: BrokerFactory,
) -> None:
    broker = await broker_factory(attach_max_targets=MAX_TARGETS)
    lease = await broker.client.acquire(attach="cdp", ttl=120)
    try:
        async with raw(lease.connect_url) as client:
            bogus = {"url": "about:blank", "browserContextId": "0" * 32}
            for _ in range(6):  # each refused by Chromium, each slot given back
                answer = await client.call("Target.createTarget", bogus)
                assert "error" in answer and "max_targets" not in json.dumps(answer), answer
        async with raw(lease.connect_url) as client:  # creates sent, the client gone
            for ident in (1, 2):
                params = {"url": "about:blank"}
                create = {"id": ident, "method": "Target.createTarget", "params": params}
                await client.socket.send(json.dumps(create))
        async with raw(lease.connect_url) as client:
            for _ in range(100):  # their pages open, counted once each
                if len(await _pages(client)) >= MAX_TARGETS:
                    break
                await asyncio.sleep(0.1)
            assert len(await _pages(client)) == MAX_TARGETS
            refused = await client.call("Target.createTarget", {"url": "about:blank"})
            assert "max_targets" in refused["error"]["message"], refused
            last = (await _pages(client))[-1]
            closed = await client.call("Target.closeTarget", {"targetId": last["targetId"]})
            assert closed["result"]["success"], closed
            for _ in range(100):
                if len(await _pages(client)) < MAX_TARGETS:
                    break
                await asyncio.sleep(0.1)
            # The hub hears targetDestroyed after the answer: a loaded machine may take a while.
            for _ in range(600):
                again = await client.call("Target.createTarget", {"url": "about:blank"})
                if "result" in again:
                    break
                assert "max_targets" in again["error"]["message"], again
                await asyncio.sleep(0.1)
            assert "result" in again, again
            refused = await client.call("Target.createTarget", {"url": "about:blank"})
            assert "max_targets" in refused["error"]["message"], refused
    finally:
        await lease.release()


async def test_review2_chromiums_own_page_targets_run_no_webui(
    broker_factory: BrokerFactory,
) -> None:
    broker = await broker_factory()
    lease = await broker.client.acquire(attach="cdp", ttl=120)
    try:
        async with raw(lease.connect_url) as client:
            targets = (await client.call("Target.getTargets"))["result"]["targetInfos"]
            own = [t for t in targets if t["url"].startswith("chrome://")]
            for target in own:
                attach = {"targetId": target["targetId"], "flatten": True}
                attached = await client.call("Target.attachToTarget", attach)
                if "error" in attached:
                    continue  # (gone since, or refused: either holds)
                session = attached["result"]["sessionId"]
                probe = {
                    "expression": "[location.href, typeof chrome.send, typeof Mojo]",
                    "returnByValue": True,
                }
                answer = await client.call("Runtime.evaluate", probe, session=session)
                href, send, mojo = answer["result"]["result"]["value"]
                assert not href.startswith("chrome://"), answer
                assert (send, mojo) == ("undefined", "undefined"), answer
                go = await client.call("Page.navigate", {"url": "file:///etc/passwd"}, session)
                assert "file: URL" in go["error"]["message"], go
    finally:
        await lease.release()

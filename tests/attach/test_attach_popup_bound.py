"""Pages a site opens itself (window.open, target=_blank links) count against attach_max_targets
over WebDriver BiDi and Playwright's protocol as over CDP: past the bound they are closed, the
count stays the browser's own (a page closed frees its slot), and nothing is left of the lease."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from browserbroker import AttachProtocol
from tests.attach import bidi_support, playwright_support
from tests.attach.bidi_support import bidi_lease, firefox_broker, first_context, refused
from tests.attach.playwright_support import raw_playwright
from tests.attach.support import RawClient, raw
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MAX_TARGETS = 3
POPUPS = 8
SETTLE_S = 3.0  # how long the count must stay within the bound once it is
WAIT_S = 60.0  # the most a step may take on a loaded machine


async def _top_level(client: RawClient) -> list[str]:
    tree = await client.call("browsingContext.getTree", {"maxDepth": 0})
    return [c["context"] for c in tree["result"]["contexts"]]


async def _bidi_events(
    client: RawClient, seconds: float, done: Callable[[list[dict[str, Any]]], bool] | None = None
) -> list[dict[str, Any]]:
    """What the client is sent for `seconds`, or until `done` (then up to WAIT_S)."""
    events: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    until = loop.time() + (seconds if done is None else WAIT_S)
    while (left := until - loop.time()) > 0 and not (done and done(events)):
        try:
            events.append(json.loads(await asyncio.wait_for(client.socket.recv(), left)))
        except TimeoutError:
            break
    return events


async def _settled(client: RawClient) -> list[str]:
    """The top-level contexts, once within the bound for SETTLE_S."""
    for _ in range(int(WAIT_S * 10)):
        if len(await _top_level(client)) <= MAX_TARGETS:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(SETTLE_S)
    return await _top_level(client)


def _answered(ident: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda events: any(e.get("id") == ident for e in events)


async def test_bidi_popups_past_the_bound_are_closed(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    broker = await firefox_broker(broker_factory, attach_max_targets=MAX_TARGETS)
    lease = await bidi_lease(broker, ttl=120)
    async with raw(lease.connect_url) as client:
        first = await first_context(client)
        url = fixture_server.url(f"/popups?n={POPUPS}")
        go = {"context": first, "url": url, "wait": "complete"}
        navigate = {"id": 8000, "method": "browsingContext.navigate", "params": go}
        await client.socket.send(json.dumps(navigate))
        # Unsubscribed, the client is sent none of the hub's own page events.
        heard = await _bidi_events(client, 0, _answered(8000))
        heard += await _bidi_events(client, SETTLE_S)
        assert [e["type"] for e in heard if e.get("id") == 8000] == ["success"], heard
        assert not [e for e in heard if e.get("type") == "event"], heard
        pages = await _settled(client)
        assert len(pages) == MAX_TARGETS, f"{len(pages)} pages open (bound {MAX_TARGETS})"
        # The count is the browser's: full now, and a page closed frees its slot.
        create = {"type": "tab"}
        refused(await client.call("browsingContext.create", create), "browsingContext.create")
        closing = {"context": pages[-1]}
        assert (await client.call("browsingContext.close", closing))["type"] == "success"
        # Its slot frees when its contextDestroyed comes, after the answer: a loaded machine
        # may take a while.
        for _ in range(int(WAIT_S * 10)):
            answer = await client.call("browsingContext.create", create)
            if answer["type"] == "success":
                break
            refused(answer, "browsingContext.create")
            await asyncio.sleep(0.1)
        assert answer["type"] == "success", answer
        # A client that subscribes hears a popup open, and close past the bound.
        subscribe = {
            "events": ["browsingContext.contextCreated", "browsingContext.contextDestroyed"]
        }
        assert (await client.call("session.subscribe", subscribe))["type"] == "success"
        popup = {
            "expression": "window.open('about:blank'); 1",
            "target": {"context": first},
            "awaitPromise": False,
            "userActivation": True,
        }
        # (sent, not called: the events come before its answer)
        evaluate = {"id": 9000, "method": "script.evaluate", "params": popup}
        await client.socket.send(json.dumps(evaluate))
        heard = await _bidi_events(
            client,
            0,
            lambda h: (
                _answered(9000)(h)
                and any(e.get("method") == "browsingContext.contextDestroyed" for e in h)
            ),
        )
        methods = [e.get("method") for e in heard]
        assert "browsingContext.contextCreated" in methods, methods
        assert "browsingContext.contextDestroyed" in methods, methods
        assert any(e.get("id") == 9000 and e["type"] == "success" for e in heard), heard
        assert len(await _top_level(client)) == MAX_TARGETS
        # Unsubscribing by event names (which may remove the hub's subscription too) leaves
        # the bound kept: the hub subscribes again and recounts.
        assert (await client.call("session.unsubscribe", subscribe))["type"] == "success"
        evaluate["id"] = 9001
        await client.socket.send(json.dumps(evaluate))
        heard = await _bidi_events(client, 0, _answered(9001))
        assert not [e for e in heard if e.get("type") == "event"], heard
        assert len(await _settled(client)) == MAX_TARGETS
    await lease.release()
    await broker.broker.leases.wait_all_closed()
    await bidi_support.no_browser_left()


class PagesSeen:
    """The pages Playwright's server has made for a raw client and not yet disposed of."""

    def __init__(self) -> None:
        self.live: set[str] = set()
        self.made = 0

    def see(self, message: dict[str, Any]) -> None:
        params = message.get("params") or {}
        if message.get("method") == "__create__" and params.get("type") == "Page":
            self.live.add(params["guid"])
            self.made += 1
        elif message.get("method") == "__dispose__":
            self.live.discard(message.get("guid", ""))

    async def read(self, socket: Any, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while (left := until - loop.time()) > 0:
            try:
                self.see(json.loads(await asyncio.wait_for(socket.recv(), left)))
            except TimeoutError:
                return


async def test_playwright_popups_past_the_bound_are_closed(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    broker = await broker_factory(attach_max_targets=MAX_TARGETS)
    lease = await broker.client.acquire(attach=AttachProtocol.PLAYWRIGHT, ttl=120)
    async with raw_playwright(lease.connect_url) as client:
        browser = await client.initialize()
        context, page, frame = await client.new_page(browser)
        seen = PagesSeen()
        seen.live.add(page)
        go = {"url": fixture_server.url(f"/popups?n={POPUPS}"), "waitUntil": "load"}
        await client.socket.send(
            json.dumps({"id": 900, "guid": frame, "method": "goto", "params": go})
        )
        for _ in range(int(WAIT_S * 10)):  # every popup announced, those past the bound gone
            if seen.made == POPUPS and len(seen.live) <= MAX_TARGETS:
                break
            await seen.read(client.socket, 0.1)
        await seen.read(client.socket, SETTLE_S)
        assert seen.made == POPUPS, f"the site opened {seen.made} popups"
        assert len(seen.live) == MAX_TARGETS, f"{len(seen.live)} pages open"
        # Full now; a page closed frees its slot.
        full = await client.call(context, "newPage", {})
        assert "pages are open" in full["error"]["error"]["message"], full
        popup = next(guid for guid in seen.live if guid != page)
        assert "error" not in await client.call(popup, "close", {})
        # Its slot frees when its disposal comes, after the answer: a loaded machine may take
        # a while.
        for _ in range(int(WAIT_S * 10)):
            opened = await client.call(context, "newPage", {})
            if "result" in opened:
                break
            assert "pages are open" in opened["error"]["error"]["message"], opened
            await asyncio.sleep(0.1)
        assert "result" in opened, opened
    await lease.release()
    await broker.broker.leases.wait_all_closed()
    await playwright_support.no_browser_left()

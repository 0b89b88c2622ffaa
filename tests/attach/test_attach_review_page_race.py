"""Review attacks on the page bounds of the three relays: creates sent together, all before any
page lands. Each hub counts the pages being opened (a create relayed and not answered yet)
with those open, so a burst opens no more than attach_max_targets pages; the rest are refused
by name. Nothing of the lease is left after."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from browserbroker import AsyncLease, AttachProtocol
from tests.attach import bidi_support, playwright_support
from tests.attach.bidi_support import bidi_lease, firefox_broker
from tests.attach.playwright_support import RawPlaywright, raw_playwright
from tests.attach.support import raw
from tests.conftest import BrokerFactory
from tests.support import InProcessBroker

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MAX_TARGETS = 3
SENT = 12  # at once, within the default burst and unanswered-call bounds
FIRST = 1000  # the burst's first id


def outcomes(answers: list[dict[str, Any]], ok: str, words: str) -> int:
    """How many of `answers` succeeded (by their `ok` member); every other one is a refusal
    naming the bound (`words`)."""
    made = [a for a in answers if ok in a]
    for answer in answers:
        if ok not in answer:
            assert words in json.dumps(answer), answer
    return len(made)


async def burst(
    socket: Any, commands: list[dict[str, Any]], seen: Callable[[dict[str, Any]], None]
) -> list[dict[str, Any]]:
    """Send `commands` (ids from FIRST) at once; their answers, every other message `seen`."""
    for command in commands:
        await socket.send(json.dumps(command))
    answers: list[dict[str, Any]] = []
    while len(answers) < len(commands):
        message = json.loads(await asyncio.wait_for(socket.recv(), 60))
        if message.get("id", 0) >= FIRST:
            answers.append(message)
        else:
            seen(message)
    return answers


async def bounded_lease(
    broker_factory: BrokerFactory, protocol: AttachProtocol
) -> tuple[InProcessBroker, AsyncLease]:
    broker = await broker_factory(attach_max_targets=MAX_TARGETS)
    return broker, await broker.client.acquire(attach=protocol, ttl=120)


async def test_review_cdp_creates_sent_together_stay_bounded(
    broker_factory: BrokerFactory,
) -> None:
    broker, lease = await bounded_lease(broker_factory, AttachProtocol.CDP)
    async with raw(lease.connect_url) as client:
        create = {"method": "Target.createTarget", "params": {"url": "about:blank"}}
        commands = [{"id": FIRST + n, **create} for n in range(SENT)]
        answers = await burst(client.socket, commands, lambda _: None)
        made = outcomes(answers, "result", "max_targets")
        targets = (await client.call("Target.getTargets"))["result"]["targetInfos"]
        # (Chromium's own omnibox pages are listed too: not the lease's)
        pages = [t for t in targets if t["type"] == "page" and "chrome:" not in t["url"]]
    await lease.release()
    await broker.broker.leases.wait_all_closed()
    await playwright_support.no_browser_left()
    assert made == MAX_TARGETS - 1, answers  # beside the lease's own page
    assert len(pages) <= MAX_TARGETS, f"{len(pages)} pages open (attach_max_targets 3)"


async def test_review_bidi_creates_sent_together_stay_bounded(
    broker_factory: BrokerFactory,
) -> None:
    broker = await firefox_broker(broker_factory, attach_max_targets=MAX_TARGETS)
    lease = await bidi_lease(broker, ttl=120)
    async with raw(lease.connect_url) as client:
        create = {"method": "browsingContext.create", "params": {"type": "tab"}}
        commands = [{"id": FIRST + n, **create} for n in range(SENT)]
        answers = await burst(client.socket, commands, lambda _: None)
        tree = await client.call("browsingContext.getTree", {"maxDepth": 0})
        pages = len(tree["result"]["contexts"])
        made = outcomes(answers, "result", "attach_max_targets")
    await lease.release()
    await broker.broker.leases.wait_all_closed()
    await bidi_support.no_browser_left()
    assert made == MAX_TARGETS - 1, answers  # beside the lease's first tab
    assert pages <= MAX_TARGETS, f"{pages} pages open (attach_max_targets {MAX_TARGETS})"


def pages_seen(client: RawPlaywright, message: dict[str, Any]) -> None:
    if message.get("method") == "__create__":
        created = message["params"]
        client.objects[created["guid"]] = (created["type"], created["initializer"])
    elif message.get("method") == "__dispose__":
        client.objects.pop(message["guid"], None)


async def test_review_playwright_new_pages_sent_together_stay_bounded(
    broker_factory: BrokerFactory,
) -> None:
    broker, lease = await bounded_lease(broker_factory, AttachProtocol.PLAYWRIGHT)
    async with raw_playwright(lease.connect_url) as client:
        browser = await client.initialize()
        context = (await client.call(browser, "newContext", {}))["result"]["context"]["guid"]
        new_page = {"guid": context, "method": "newPage", "params": {}}
        commands = [{"id": FIRST + n, **new_page} for n in range(SENT)]
        answers = await burst(client.socket, commands, lambda m: pages_seen(client, m))
        pages = len(client.of_type("Page"))
        made = outcomes(answers, "result", "max_targets")
    await lease.release()
    await broker.broker.leases.wait_all_closed()
    await playwright_support.no_browser_left()
    assert made == MAX_TARGETS, answers
    assert pages <= MAX_TARGETS, f"{pages} pages open (attach_max_targets {MAX_TARGETS})"

"""Attach-only Firefox leases over WebDriver BiDi in tests: a broker with stock Firefox, a raw
BiDi client's calls, and how a refusal looks."""

from __future__ import annotations

import asyncio
from typing import Any

from broker.model.options import EngineName
from browserbroker import AsyncLease, Engine
from tests.attach.support import RawClient
from tests.conftest import BrokerFactory, require
from tests.support import InProcessBroker, in_process_browsers


async def firefox_broker(factory: BrokerFactory, **overrides: object) -> InProcessBroker:
    """A broker with stock Firefox (over BiDi) beside Chromium; skips (fails in CI) without."""
    running = await factory(engines=["chromium", "firefox"], default_engine="chromium", **overrides)
    engine = running.broker.engines[EngineName.FIREFOX]
    availability = engine.availability()
    require(availability.available, f"firefox unavailable: {availability.detail}")
    require("webdriver-bidi" in availability.detail, "needs a stock Firefox (BiDi)")
    return running


async def bidi_lease(broker: InProcessBroker, **kwargs: Any) -> AsyncLease:
    return await broker.client.acquire(engine=Engine.FIREFOX, attach="bidi", **kwargs)


async def first_context(client: RawClient) -> str:
    tree = await client.call("browsingContext.getTree", {})
    context: str = tree["result"]["contexts"][0]["context"]
    return context


def refused(answer: dict[str, Any], method: str, *words: str) -> None:
    assert answer.get("type") == "error", answer
    assert answer["error"] == "unsupported operation", answer
    assert answer["message"].startswith(method), answer
    for word in words:
        assert word in answer["message"], answer


async def no_browser_left() -> None:
    """No browser process is left below this process (the broker's are its children)."""
    for _ in range(100):
        if not in_process_browsers():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"browsers left: {[p.pid for p in in_process_browsers()]}")

"""Review attacks on the Playwright-protocol relay: a navigation the rules judge as one URL and
Playwright's server opens as another (a context's `baseURL` is applied after the judge)."""

from __future__ import annotations

from typing import Any

import pytest

from browserbroker import AttachProtocol
from tests.attach.playwright_support import raw_playwright
from tests.conftest import BrokerFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HOST_WORDS = "root:x:0:0"
# Was open: Browser.newContext's baseURL was not judged, and Frame.goto's url is judged before
# Playwright's server resolves it against baseURL: 'localhost/../passwd' was judged as
# http://localhost/../passwd and opened as file:///etc/passwd. A context's base must now be
# http(s), so every URL resolved against it is.


async def _goto_through_base_url(broker_factory: BrokerFactory, **settings: Any) -> tuple[Any, Any]:
    """The answers to the goto and to the page's content afterwards."""
    broker = await broker_factory(**settings)
    lease = await broker.client.acquire(attach=AttachProtocol.PLAYWRIGHT, ttl=120)
    async with raw_playwright(lease.connect_url) as client:
        browser = await client.initialize()
        made = await client.call(browser, "newContext", {"baseURL": "file:///etc/"})
        if "error" in made:  # refused: a context without the base, and the same goto
            refused = made["error"]["error"]["message"]
            assert "is refused" in refused and "baseURL" in refused, made
            made = await client.call(browser, "newContext", {})
        context = made["result"]["context"]["guid"]
        page = (await client.call(context, "newPage", {}))["result"]["page"]["guid"]
        frame = client.objects[page][1]["mainFrame"]["guid"]
        # The server navigates to new URL('localhost/../passwd', 'file:///etc/').
        went = await client.call(frame, "goto", {"url": "localhost/../passwd"})
        content = await client.call(frame, "content", {})
    await lease.release()
    return went, content


async def test_review_the_relay_judges_the_url_the_server_opens(
    broker_factory: BrokerFactory,
) -> None:
    """Default settings: no file: base, so the goto opens no file (Chromium's URLBlocklist
    stopped it before, with ERR_BLOCKED_BY_ADMINISTRATOR at file:///etc/passwd)."""
    went, content = await _goto_through_base_url(broker_factory)
    assert "file:///etc/passwd" not in str(went), went
    assert HOST_WORDS not in str(content)


async def test_review_base_url_reads_a_file_with_allow_file_urls(
    broker_factory: BrokerFactory,
) -> None:
    """With allow_file_urls (an operator's setting for Runs' goto) the relay is the only wall
    for attached clients; the file's content reaches the client."""
    went, content = await _goto_through_base_url(broker_factory, allow_file_urls=True)
    assert HOST_WORDS not in str(content), (went, str(content)[:300])

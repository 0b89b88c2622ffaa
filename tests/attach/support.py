"""Attached clients in tests: a Playwright that connects over CDP, and the socket's close."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import websockets
from playwright.async_api import Browser, Page, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

from tests.fixture_site import FixtureSite


@asynccontextmanager
async def playwright() -> AsyncIterator[Playwright]:
    async with async_playwright() as p:
        yield p


async def connect(p: Playwright, url: str) -> Browser:
    return await p.chromium.connect_over_cdp(url, timeout=30_000)


class RawClient:
    """A CDP client speaking raw JSON over the socket, to send what no library would."""

    def __init__(self, socket: websockets.ClientConnection) -> None:
        self.socket = socket
        self._next = 0

    async def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        self._next += 1
        ident = self._next
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        await self.socket.send(json.dumps(message))
        while True:
            answer = json.loads(await asyncio.wait_for(self.socket.recv(), 30))
            if answer.get("id") == ident:
                return answer  # type: ignore[no-any-return]


@asynccontextmanager
async def raw(url: str, **kwargs: Any) -> AsyncIterator[RawClient]:
    async with websockets.connect(url, max_size=None, **kwargs) as socket:
        yield RawClient(socket)


async def closed_with(socket: websockets.ClientConnection, timeout: float = 30) -> tuple[int, str]:
    """Wait for the broker to close the socket; its close code and reason."""
    await asyncio.wait_for(socket.wait_closed(), timeout)
    assert socket.close_code is not None
    return socket.close_code, socket.close_reason or ""


async def sign_in_and_approve_a_popup(page: Page, site: FixtureSite) -> None:
    """The fixture site's scenario, as an attached client drives it: sign in and scrape the
    account page, then complete the OAuth popup (the opener's status says it went through)."""
    await page.goto(site.url("login.html"))
    await page.fill("#user", "ada")
    await page.fill("#password", "secret")
    await page.click("#submit")
    await page.wait_for_url("**/account")
    assert await page.inner_text("#who") == "signed in as ada"
    assert await page.inner_text("#stored") == "ada"
    await page.goto(site.url("app.html"))
    async with page.expect_popup() as popup_info:
        await page.click("#oauth")
    popup = await popup_info.value
    await popup.wait_for_load_state()
    assert "/oauth/authorize" in popup.url
    # The button closes its own window: Playwright may see the page close before the click's
    # own checks end (TargetClosedError); the opener's status below proves it.
    with contextlib.suppress(PlaywrightError):
        await popup.click("#approve")
    await page.wait_for_function(
        "document.getElementById('status').textContent.startsWith('connected')"
    )
    assert await page.inner_text("#status") == "connected: c0de"

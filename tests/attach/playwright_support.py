"""Playwright-protocol clients in tests: one that speaks the protocol itself (to send what no
library would), and the check that no browser or launch script is left."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psutil
import websockets

from broker.engines.playwright.serving import ServingEngine
from tests.support import InProcessBroker, in_process_browsers

USER_AGENT = "Playwright/1.62.0 (tests) python/3"


class RawPlaywright:
    """Playwright's protocol over a socket: calls by guid, and the objects the server made."""

    def __init__(self, socket: websockets.ClientConnection) -> None:
        self.socket = socket
        self.objects: dict[str, tuple[str, dict[str, Any]]] = {}  # guid -> type, initializer
        self.events: list[dict[str, Any]] = []
        self._next = 0

    async def call(self, guid: str, method: str, params: dict[str, Any] | None = None) -> Any:
        self._next += 1
        ident = self._next
        await self.socket.send(
            json.dumps({"id": ident, "guid": guid, "method": method, "params": params or {}})
        )
        while True:
            message = json.loads(await asyncio.wait_for(self.socket.recv(), 30))
            if message.get("id") == ident:
                return message
            if message.get("method") == "__create__":
                created = message["params"]
                self.objects[created["guid"]] = (created["type"], created["initializer"])
            self.events.append(message)

    def of_type(self, kind: str) -> list[str]:
        return [guid for guid, (found, _) in self.objects.items() if found == kind]

    async def initialize(self) -> str:
        """The guid of the lease's browser, as the server hands it to a connection."""
        answer = await self.call("", "initialize", {"sdkLanguage": "python"})
        assert "result" in answer, answer
        playwright = answer["result"]["playwright"]["guid"]
        browser = self.objects[playwright][1]["preLaunchedBrowser"]["guid"]
        return str(browser)

    async def new_page(self, browser: str) -> tuple[str, str, str]:
        """A new context and page: (context, page, its main frame) guids."""
        context = (await self.call(browser, "newContext", {}))["result"]["context"]["guid"]
        page = (await self.call(context, "newPage", {}))["result"]["page"]["guid"]
        frame = self.objects[page][1]["mainFrame"]["guid"]
        return context, page, frame


@asynccontextmanager
async def raw_playwright(url: str) -> AsyncIterator[RawPlaywright]:
    async with websockets.connect(url, max_size=None, user_agent_header=USER_AGENT) as socket:
        yield RawPlaywright(socket)


def launch_scripts() -> list[psutil.Process]:
    """The launch scripts (launch_server.js) below this process."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if any(arg.endswith("launch_server.js") for arg in proc.cmdline()[:3]):
                found.append(proc)
        except psutil.Error:
            continue
    return found


async def no_browser_left() -> None:
    for _ in range(150):
        if not in_process_browsers() and not launch_scripts():
            return
        await asyncio.sleep(0.1)
    left = [p.pid for p in in_process_browsers() + launch_scripts()]
    raise AssertionError(f"processes left: {left}")


def patient(running: InProcessBroker, launch_timeout_s: float = 120.0) -> InProcessBroker:
    """Give the engines' launches more time than the 30 s default: a Firefox behind its
    launchServer started in 10 s on an idle machine of this suite's, and took over 30 s under
    the load of a shared one."""
    for engine in running.broker.engines.values():
        if isinstance(engine, ServingEngine):
            engine._launch_timeout_s = launch_timeout_s
            if engine.served is not None:
                engine.served.launch_timeout_s = launch_timeout_s
    return running

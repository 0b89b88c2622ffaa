"""The broker's attachable leases in bench.peers: the attach cycle, and a CDP round trip through
the broker's attach socket beside the same command sent straight to a Chromium's DevTools.

An attach cycle: Acquire(attach=cdp), `connect_over_cdp(lease.connect_url)`, a new context and
page, goto, read the h1, disconnect, Release; the same with attach=playwright and
`browser_type.connect`. The round trip: `Runtime.evaluate("1")` on a page's
flat session, on one socket kept open each way, the two sockets alternated sample by sample.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets
from playwright.async_api import Browser, Playwright

from bench.peer_systems import (
    AS_ROOT_ARGS,
    SESSION_TIMEOUT_S,
    BrokerSdk,
    free_port,
    stop_process,
    visit,
    wait_for_port,
)
from broker.engines.chromium import SERVER_ARGS
from browserbroker import AsyncBrokerClient, AsyncLease
from tests.support import BrokerProcess

WARMUP_ROUND_TRIPS = 20


class BrokerAttachCdp(BrokerSdk):
    """The broker, an attachable lease driven over CDP by Playwright's connect_over_cdp."""

    name = "broker, attach cycle over CDP (connect_over_cdp)"
    protocol = "cdp"

    def __init__(self, broker: BrokerProcess, playwright: Playwright, url: str) -> None:
        super().__init__(broker, url)
        self.playwright = playwright

    async def connect(self, url: str) -> Browser:
        return await self.playwright.chromium.connect_over_cdp(
            url, timeout=SESSION_TIMEOUT_S * 1000
        )

    async def acquire(self) -> AsyncLease:
        assert self.client is not None
        return await self.client.acquire(attach=self.protocol, timeout=SESSION_TIMEOUT_S)

    async def session(self) -> float:
        started = time.perf_counter()
        lease = await self.acquire()
        try:
            browser = await self.connect(lease.connect_url)
            try:
                context = await browser.new_context()
                await visit(await context.new_page(), self.url, self.name)
            finally:
                await browser.close()  # disconnects; the lease's browser ends with the lease
        finally:
            await lease.release()
        return time.perf_counter() - started


class BrokerAttachPlaywright(BrokerAttachCdp):
    """The same cycle over Playwright's own protocol: Acquire(attach=playwright),
    browser_type.connect."""

    name = "broker, attach cycle over Playwright's protocol (connect)"
    protocol = "playwright"

    async def connect(self, url: str) -> Browser:
        return await self.playwright.chromium.connect(url, timeout=SESSION_TIMEOUT_S * 1000)


class CdpSocket:
    """A CDP client on one WebSocket, attached to a page with a flat session."""

    def __init__(self, socket: websockets.ClientConnection) -> None:
        self.socket = socket
        self.next_id = 0
        self.session_id = ""

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session_id and not method.startswith("Target."):
            message["sessionId"] = self.session_id
        await self.socket.send(json.dumps(message))
        while True:  # events in between are not the answer
            answer = json.loads(await asyncio.wait_for(self.socket.recv(), 60))
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                result: dict[str, Any] = answer["result"]
                return result

    async def attach_to_page(self) -> None:
        targets = (await self.call("Target.getTargets"))["targetInfos"]
        pages = [t["targetId"] for t in targets if t["type"] == "page"]
        if pages:
            target = pages[0]
        else:
            target = (await self.call("Target.createTarget", {"url": "about:blank"}))["targetId"]
        attached = await self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        self.session_id = attached["sessionId"]

    async def round_trip(self) -> float:
        started = time.perf_counter()
        result = await self.call("Runtime.evaluate", {"expression": "1"})
        elapsed = time.perf_counter() - started
        if result.get("result", {}).get("value") != 1:
            raise RuntimeError(f"Runtime.evaluate('1') answered {result}")
        return elapsed


class DevToolsChromium:
    """The bench's Chromium with --remote-debugging-port on loopback, for the direct figure."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.port = free_port()
        self.profile = Path(tempfile.mkdtemp(prefix="bench-devtools-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        """Starts it; its browser WebSocket URL."""
        self.proc = subprocess.Popen(
            [
                self.executable,
                "--headless=new",
                "--remote-debugging-address=127.0.0.1",
                f"--remote-debugging-port={self.port}",
                f"--user-data-dir={self.profile}",
                *SERVER_ARGS,
                *AS_ROOT_ARGS,
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port, self.proc, "Chromium's DevTools endpoint", 60)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", "/json/version")
            url: str = json.loads(conn.getresponse().read())["webSocketDebuggerUrl"]
        finally:
            conn.close()
        return url

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.profile, ignore_errors=True)


async def alternated_round_trips(
    first_url: str, second_url: str, samples: int
) -> tuple[list[float], list[float]]:
    """`Runtime.evaluate("1")` on a page of each of two CDP endpoints, alternated sample by
    sample after a few untimed each: the seconds of each."""
    async with (
        websockets.connect(first_url, max_size=None) as first,
        websockets.connect(second_url, max_size=None) as second,
    ):
        sockets = (CdpSocket(first), CdpSocket(second))
        for sock in sockets:
            await sock.attach_to_page()
            for _ in range(WARMUP_ROUND_TRIPS):
                await sock.round_trip()
        first_s: list[float] = []
        second_s: list[float] = []
        for _ in range(samples):
            first_s.append(await sockets[0].round_trip())
            second_s.append(await sockets[1].round_trip())
    return first_s, second_s


async def cdp_round_trips(
    broker: BrokerProcess, executable: str, samples: int
) -> dict[str, list[float]]:
    """`Runtime.evaluate("1")` through an attachable lease's socket and straight to a
    Chromium's DevTools endpoint, alternated sample by sample (after a few untimed each)."""
    direct = DevToolsChromium(executable)
    direct_url = await asyncio.to_thread(direct.start)
    try:
        async with AsyncBrokerClient(broker.address) as client:
            lease = await client.acquire(attach="cdp", timeout=120)
            try:
                broker_s, direct_s = await alternated_round_trips(
                    lease.connect_url, direct_url, samples
                )
            finally:
                await lease.release()
    finally:
        await asyncio.to_thread(direct.stop)
    return {"broker_attach": broker_s, "direct_devtools": direct_s}

"""Node Playwright attached over Playwright's own protocol: `examples/attach/node/
playwright_connect.js`, run with the node and the playwright-core of Python Playwright's driver
(a client must be of the server's version), signs in on the fixture site, scrapes, completes a
popup and downloads a file; Release then closes its socket with 4001 and leaves no browser."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest

from broker.engines.playwright.served import driver_package
from browserbroker import AttachProtocol, Engine
from tests.attach.playwright_support import no_browser_left, patient
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite
from tests.support import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCRIPT = ROOT / "examples/attach/node/playwright_connect.js"
SCENARIO_TIMEOUT_S = 150.0  # a cold browser on a busy machine; the scenario takes ~5 s


async def next_event(proc: asyncio.subprocess.Process, lines: list[str]) -> dict[str, Any]:
    assert proc.stdout is not None and proc.stderr is not None
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), SCENARIO_TIMEOUT_S)
        if not line:
            stderr = (await proc.stderr.read()).decode(errors="replace")[-4000:]
            raise AssertionError("the client exited early:\n" + "\n".join(lines) + stderr)
        lines.append(line.decode().rstrip())
        event: dict[str, Any] = json.loads(line)
        assert event["event"] != "error", "\n".join(lines)
        return event


@pytest.mark.parametrize("engine", ["chromium", "firefox"])
async def test_node_playwright_connects_and_runs_the_scenario(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: str
) -> None:
    broker = patient(await broker_factory(engines=["chromium", "firefox"]))
    lease = await broker.client.acquire(
        attach=AttachProtocol.PLAYWRIGHT, engine=Engine[engine.upper()], ttl=180
    )
    node, package = driver_package()
    env = {**os.environ, "PLAYWRIGHT_CORE": str(package), "BROWSER_TYPE": engine}
    proc = await asyncio.create_subprocess_exec(
        node,
        str(SCRIPT),
        lease.connect_url,
        fixture_server.url(""),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    lines: list[str] = []
    try:
        seen: dict[str, dict[str, Any]] = {}
        while "ready" not in seen:
            event = await next_event(proc, lines)
            seen[event["event"]] = event
        assert seen["login"]["who"] == "signed in as ada"
        assert "/oauth/authorize" in seen["popup"]["url"]
        assert seen["status"]["text"] == "connected: c0de"
        download = seen["download"]
        assert (download["filename"], download["state"]) == ("report.txt", "completed")
        assert download["text"] == "quarterly report\n"
        await lease.release()
        closed = await next_event(proc, lines)
        assert (closed["code"], closed["reason"]) == (4001, "lease ended: client_release")
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    await broker.broker.leases.wait_all_closed()
    await no_browser_left()

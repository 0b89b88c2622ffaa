"""The relay's allow list against the protocol the real Chromium serves: every command it
describes is allowed or refused on purpose, so a command a newer Chromium adds fails here until
it is judged (and is refused by the relay meanwhile). The browser's own description is read
from a browser started for this test alone, on a loopback port, with a blank page."""

from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from broker.attach.allowed import DOMAINS, judged
from broker.engines.discovery import find_browser, playwright_managed
from tests.attach.support import raw
from tests.conftest import BrokerFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _served_protocol() -> dict[str, object]:
    executable = find_browser("chromium", None, playwright_managed("chromium")).path
    with tempfile.TemporaryDirectory(prefix="protocol-") as profile:
        browser = subprocess.Popen(
            [
                executable,
                "--headless",
                "--no-sandbox",  # a blank page, only its description is read
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            active = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 60
            while not active.exists() or not active.read_text().strip():
                assert time.monotonic() < deadline, "the browser did not open its port"
                time.sleep(0.1)
            port = active.read_text().split()[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/protocol", timeout=30) as r:
                return json.loads(r.read())  # type: ignore[no-any-return]
        finally:
            browser.kill()
            browser.wait(30)


async def test_every_command_the_browser_serves_is_judged() -> None:
    protocol = await asyncio.to_thread(_served_protocol)
    domains = protocol["domains"]
    assert isinstance(domains, list)
    commands = [f"{d['domain']}.{c['name']}" for d in domains for c in d.get("commands", [])]
    assert len(commands) > 500, "the browser described no commands"
    unjudged = sorted(c for c in commands if not judged(c))
    assert not unjudged, f"commands neither allowed nor refused on purpose: {unjudged}"


async def test_the_relay_refuses_what_it_has_not_judged(broker_factory: BrokerFactory) -> None:
    broker = await broker_factory()
    async with broker.client.lease(attach="cdp", ttl=60) as lease, raw(lease.connect_url) as client:
        target = (await client.call("Target.createTarget", {"url": ""}))["result"]["targetId"]
        attached = await client.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        answer = await client.call("Schema.getDomains", {}, attached["result"]["sessionId"])
        names = [domain["name"] for domain in answer["result"]["domains"]]
        assert names and not set(names) - DOMAINS, sorted(set(names) - DOMAINS)
        for method in ("Page.someFutureCommand", "Future.command"):
            refused = await client.call(method)
            assert refused["error"]["code"] == -32000
            assert refused["error"]["message"].startswith(method)
            assert "not allowed on an attached lease" in refused["error"]["message"]
        refused = await client.call("SystemInfo.getInfo")
        assert "SystemInfo.getInfo is refused" in refused["error"]["message"]
        assert "result" in await client.call("Browser.getVersion")

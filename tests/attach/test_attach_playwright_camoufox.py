"""Camoufox over Playwright's own protocol: `p.firefox.connect(url)` on a `playwright` lease of
engine camoufox, as on a Camoufox server of its own.

Where Camoufox's browser is installed: a client connects, runs the fixture site's scenario in a
browser with the fingerprint the lease asked for while a Run shares the lease, is refused what
the hub refuses on any engine, and the lease's release leaves no process. Where it is not (it
cannot be fetched without a network), the lease is refused with the same cause and fix as a
camoufox Run lease, and the broker serves on (tests/integration/test_engines.py does the same).
"""

from __future__ import annotations

import grpc
import pytest

from browserbroker import AttachProtocol, CamoufoxOptions, Engine, EngineUnavailableError, steps
from tests.attach.playwright_support import no_browser_left, patient, raw_playwright
from tests.attach.support import playwright, sign_in_and_approve_a_popup
from tests.attach.test_attach_playwright_hostile import refused
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite
from tests.integration.test_engines import CAMOUFOX_INSTALLED, only_where

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ENGINES = ["chromium", "camoufox"]


@only_where(CAMOUFOX_INSTALLED)
async def test_camoufox_connect_runs_the_scenario_with_the_lease_fingerprint(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    from broker.model.options import EngineName

    broker = patient(await broker_factory(engines=ENGINES, default_engine="chromium"))
    assert broker.broker.engines[EngineName.CAMOUFOX].availability().available
    options = CamoufoxOptions(os=["windows"], locales=["de-DE"])
    async with (
        broker.client.lease(
            attach="playwright", engine=Engine.CAMOUFOX, camoufox=options, ttl=120
        ) as lease,
        playwright() as p,
    ):
        browser = await p.firefox.connect(lease.connect_url, timeout=60_000)
        # No viewport: the window is the fingerprint's (Playwright's default one would
        # hang Juggler while Camoufox spoofs the window's size).
        context = await browser.new_context(no_viewport=True)
        page = await context.new_page()
        platform, language = await page.evaluate("[navigator.platform, navigator.language]")
        assert platform.startswith("Win") and language == "de-DE"
        await sign_in_and_approve_a_popup(page, fixture_server)
        result = await lease.run(
            steps.goto(fixture_server.url("form.html")), steps.text("h1"), timeout=60
        )
        assert result.raise_for_failure()[1].text == "Fixture"
        assert len(browser.contexts) == 1  # only the client's own
        await browser.close()
    await broker.broker.leases.wait_all_closed()
    await no_browser_left()


@only_where(CAMOUFOX_INSTALLED)
async def test_camoufox_hostile_calls_are_refused_as_on_firefox(
    broker_factory: BrokerFactory,
) -> None:
    broker = patient(await broker_factory(engines=ENGINES, default_engine="chromium"))
    lease = await broker.client.acquire(
        attach=AttachProtocol.PLAYWRIGHT, engine=Engine.CAMOUFOX, ttl=120
    )
    async with raw_playwright(lease.connect_url) as client:
        browser = await client.initialize()
        made = await client.call(browser, "newContext", {"noDefaultViewport": True})
        context = made["result"]["context"]["guid"]
        page = (await client.call(context, "newPage", {}))["result"]["page"]["guid"]
        frame = client.objects[page][1]["mainFrame"]["guid"]
        refused(await client.call(frame, "goto", {"url": "file:///etc/passwd"}), "Frame.goto")
        playwright_guid = client.of_type("Playwright")[0]
        launcher = client.objects[playwright_guid][1]["firefox"]["guid"]
        refused(await client.call(launcher, "launch", {}), "BrowserType.launch")
        proxy = {"proxy": {"server": "http://10.0.0.1:3128"}}
        refused(await client.call(browser, "newContext", proxy), "proxy")
        refused(await client.call(browser, "newBrowserCDPSession", {}), "raw CDP")
    await lease.release()
    await broker.broker.leases.wait_all_closed()
    await no_browser_left()


@only_where(not CAMOUFOX_INSTALLED)
async def test_camoufox_playwright_lease_says_why_not_as_a_run_lease_does(
    broker_factory: BrokerFactory,
) -> None:
    running = await broker_factory(engines=ENGINES, default_engine="chromium")
    client = running.client
    with pytest.raises(EngineUnavailableError) as run_lease:
        await client.acquire(engine=Engine.CAMOUFOX, timeout=10)
    for options in (None, CamoufoxOptions(os=["windows"])):
        with pytest.raises(EngineUnavailableError) as attached:
            await client.acquire(
                engine=Engine.CAMOUFOX,
                attach=AttachProtocol.PLAYWRIGHT,
                camoufox=options,
                timeout=10,
            )
        # Not INVALID_ARGUMENT on `engine`: the same cause and fix as a Run lease.
        assert attached.value.code is grpc.StatusCode.FAILED_PRECONDITION
        assert attached.value.details == run_lease.value.details
        assert "python -m camoufox fetch" in attached.value.details
        assert attached.value.metadata.get("engine") == "camoufox"
    assert (await client.status()).active_leases == 0
    # The broker serves on: a Playwright-protocol lease of another engine.
    async with client.lease(attach="playwright", engine=Engine.CHROMIUM, ttl=60) as lease:
        assert lease.connect_url.startswith("ws://127.0.0.1:")

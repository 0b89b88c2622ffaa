"""A Camoufox lease over Playwright's protocol, end to end, with a stand-in for Camoufox.

Camoufox's browser cannot be installed here, so its parts are stood in for: the engine is told
it is installed (`CAMOUFOX_EXECUTABLE_PATH` names a stock Firefox, the fingerprint model counts
as pinned), `camoufox.launch_options` answers as Camoufox's does (arguments, an environment with
a CAMOU_CONFIG, prefs, one of them a user agent the page can read back, another one the egress
prefs must win over), and the stock Firefox is launched over WebDriver BiDi, not Juggler (the
test adds the `moz-firefox` channel). Everything else is the broker's own path: the Acquire, the
options drawn for the lease's browser, the launch script, launcher and jail, the route as proxy,
the hub, `p.firefox.connect`, a Run beside the client, Release and its clean-up. What only a real
Camoufox can show (Juggler, the fingerprint) is in test_attach_playwright_camoufox.py.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest

from broker.engines.camoufox import CamoufoxEngine
from broker.model.options import EngineName
from browserbroker import AttachProtocol, CamoufoxOptions, Engine, steps
from tests.attach.playwright_support import no_browser_left, patient
from tests.attach.support import playwright
from tests.conftest import BrokerFactory, require
from tests.fixture_site import FixtureSite

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STAND_IN_AGENT = "Mozilla/5.0 (Windows NT 10.0) CamoufoxStandIn/1.0"
FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox")


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Camoufox stood in for; the keyword arguments camoufox.launch_options was called with."""
    require(FIREFOX is not None, "no stock Firefox to stand in for Camoufox")
    import camoufox as package
    import camoufox.fpgen_model

    monkeypatch.setenv("CAMOUFOX_EXECUTABLE_PATH", str(FIREFOX))
    monkeypatch.setattr(camoufox.fpgen_model, "is_pinned", lambda: True)
    calls: list[dict[str, Any]] = []

    def launch_options(**kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs)
        config = {"window.outerWidth": 1280, "navigator.userAgent": STAND_IN_AGENT}
        return {
            "executable_path": kwargs["executable_path"],
            "args": [],
            "env": {"CAMOU_CONFIG_1": json.dumps(config)},
            "firefox_user_prefs": {
                "general.useragent.override": STAND_IN_AGENT,
                "network.proxy.allow_hijacking_localhost": False,  # the egress prefs win
            },
            "headless": True,
        }

    monkeypatch.setattr(package, "launch_options", launch_options)
    return calls


async def test_a_camoufox_lease_is_served_and_connected_with_firefox_connect(
    broker_factory: BrokerFactory,
    fixture_server: FixtureSite,
    asked: list[dict[str, Any]],
) -> None:
    broker = patient(
        await broker_factory(
            engines=["chromium", "camoufox"],
            default_engine="chromium",
            egress_allow_cidrs=[],
            egress_allow_loopback=False,
        )
    )
    engine = broker.broker.engines[EngineName.CAMOUFOX]
    assert isinstance(engine, CamoufoxEngine) and engine.served is not None
    assert engine.availability().available, engine.availability().detail
    engine.served._options["channel"] = "moz-firefox"  # the stand-in speaks BiDi, not Juggler
    options = CamoufoxOptions(os=["windows"], locales=["de-DE"])
    async with broker.client.lease(
        attach=AttachProtocol.PLAYWRIGHT, engine=Engine.CAMOUFOX, camoufox=options, ttl=120
    ) as lease:
        (kwargs,) = asked  # drawn once, for this browser, from the lease's options
        assert kwargs["os"] == ["windows"] and kwargs["locale"] == ["de-DE"]
        async with playwright() as p:
            browser = await p.firefox.connect(lease.connect_url, timeout=60_000)
            context = await browser.new_context(no_viewport=True)
            page = await context.new_page()
            # Camoufox's prefs reached the browser.
            assert await page.evaluate("navigator.userAgent") == STAND_IN_AGENT
            # The route is the way out, and the broker's egress prefs won over Camoufox's:
            # loopback goes through the route too, which refuses it here.
            response = await page.goto(fixture_server.url("file.txt"), timeout=30_000)
            assert response is not None and response.status == 403
            assert "quarterly report" not in await page.content()
            # A Run drives the same browser beside the client.
            ran = await lease.run(steps.evaluate("navigator.userAgent"), timeout=60)
            assert ran.raise_for_failure()[0].value == STAND_IN_AGENT
            await browser.close()
    await broker.broker.leases.wait_all_closed()
    await no_browser_left()

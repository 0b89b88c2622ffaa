"""Per-lease request blocking and emulation, on real Chromium and Firefox: what the fixture site
serves with and without blocking, and what the pages (popups included) see."""

from __future__ import annotations

import pytest

from broker.engines.playwright.engine import PlaywrightEngine
from broker.model.options import EngineName
from browserbroker import ContextOptions, Geolocation, InvalidArgumentError, steps
from tests.conftest import BrokerFactory
from tests.fixture_pages import HEAVY_IMAGES
from tests.fixture_site import FixtureSite
from tests.integration.test_engines import SDK_ENGINE, start
from tests.support import InProcessBroker

pytestmark = pytest.mark.browser

ENGINES = pytest.mark.parametrize("engine", ["chromium", "firefox"])


async def images_served(
    running: InProcessBroker, site: FixtureSite, engine: str, context: ContextOptions | None
) -> list[str]:
    """The image paths the site served while a lease with `context` loaded the heavy page."""
    before = len(site.images)
    async with running.client.lease(engine=SDK_ENGINE[engine], context=context) as lease:
        result = await lease.run(steps.goto(site.url("heavy.html"), "load"), timeout=60)
        result.raise_for_failure()
    return site.images[before:]


@ENGINES
async def test_blocking_resource_types_and_url_patterns(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: str
) -> None:
    running = await start(broker_factory, engine)
    plain = await images_served(running, fixture_server, engine, None)
    assert len(plain) == HEAVY_IMAGES
    by_type = ContextOptions(block_resource_types=["image"])
    assert await images_served(running, fixture_server, engine, by_type) == []
    by_pattern = ContextOptions(block_url_patterns=["**/img/1*.png"])
    served = await images_served(running, fixture_server, engine, by_pattern)
    assert sorted(served) == sorted(p for p in plain if not p.startswith("/img/1"))
    async with running.client.lease(engine=SDK_ENGINE[engine], context=by_type) as lease:
        # A blocked fetch fails in the page like a network error; the page itself loads.
        result = await lease.run(
            steps.goto(fixture_server.url("form.html")),
            steps.evaluate("fetch('/img/0.png').then(() => 'loaded', () => 'failed')"),
            timeout=30,
        )
        result.raise_for_failure()
        assert result[1].value == "loaded"  # fetch is not of type image: not blocked
    by_fetch = ContextOptions(block_resource_types=["fetch", "xhr"])
    async with running.client.lease(engine=SDK_ENGINE[engine], context=by_fetch) as lease:
        result = await lease.run(
            steps.goto(fixture_server.url("form.html")),
            steps.evaluate("fetch('/api/data').then(() => 'loaded', () => 'failed')"),
            timeout=30,
        )
        result.raise_for_failure()
        assert result[1].value == "failed"


@ENGINES
async def test_emulation_options(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: str
) -> None:
    running = await start(broker_factory, engine)
    engine_impl = running.broker.engines[EngineName(engine)]
    assert isinstance(engine_impl, PlaywrightEngine)
    wanted = {"color_scheme": "dark", "media": "print"}
    unsupported = sorted(set(wanted) & set(engine_impl.unsupported_context))
    if unsupported:  # stock Firefox over WebDriver BiDi: refused, never silently ignored
        with pytest.raises(InvalidArgumentError) as refused:
            await running.client.acquire(
                engine=SDK_ENGINE[engine],
                context=ContextOptions(color_scheme="dark", media="print"),
            )
        fields = [v.field for v in refused.value.violations]
        assert fields == [f"context.{name}" for name in unsupported]
        assert all("not supported" in v.description for v in refused.value.violations)
    dark, media = "color_scheme" not in unsupported, "media" not in unsupported
    context = ContextOptions(
        color_scheme="dark" if dark else "",
        media="print" if media else "",
        geolocation=Geolocation(latitude=52.52, longitude=13.405, accuracy=5),
        permissions=["geolocation"],
    )
    where = (
        "new Promise((ok, fail) => navigator.geolocation.getCurrentPosition("
        "p => ok([p.coords.latitude, p.coords.longitude]), e => fail(new Error(e.message))))"
    )
    async with running.client.lease(engine=SDK_ENGINE[engine], context=context) as lease:
        result = await lease.run(
            steps.goto(fixture_server.url("app.html")),
            steps.evaluate("matchMedia('(prefers-color-scheme: dark)').matches"),
            steps.evaluate("matchMedia('print').matches"),
            steps.evaluate(where),
            steps.click("#blank"),
            steps.switch_page(url="**/form.html?from=blank"),
            # Popups emulate it too.
            steps.wait_for_function(f"matchMedia('print').matches === {str(media).lower()}"),
            timeout=60,
        )
        result.raise_for_failure()
        assert result[1].value is dark and result[2].value is media
        assert result[3].value == [52.52, 13.405]
    async with running.client.lease(engine=SDK_ENGINE[engine]) as lease:
        plain = await lease.run(
            steps.goto(fixture_server.url("app.html")),
            steps.evaluate("matchMedia('print').matches"),
            timeout=60,
        )
        assert plain[1].value is False

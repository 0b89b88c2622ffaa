"""Step results are bounded in the browser, before they are built where the engine allows:
a result over the bound fails its step as TOO_LARGE, the lease stays usable, nothing leaks. And
values JSON cannot hold give a clean script error, never an internal one."""

from __future__ import annotations

import asyncio

import pytest

from broker.model.options import EngineName
from browserbroker import Engine, steps
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite

LIMIT = 100_000  # bytes of any one result


@pytest.mark.parametrize("engine", [Engine.CHROMIUM, Engine.FIREFOX])
async def test_results_over_the_bound_fail_as_too_large(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: Engine
) -> None:
    running = await broker_factory(
        engines=[EngineName.CHROMIUM, EngineName.FIREFOX],
        max_result_bytes=LIMIT,
        max_screenshot_pixels=2_000_000,
        max_pdf_pages=50,
    )
    async with running.client.lease(engine=engine) as lease:
        big = fixture_server.url("big?kb=800&height=20000")
        results = await lease.run(
            steps.goto(big),
            steps.content(),
            steps.text("#big"),
            steps.evaluate("'x'.repeat(200000)"),
            steps.screenshot(full_page=True),  # 1280 x 20000 pixels: refused before rendering
            steps.pdf(),  # about 170 pages of text: refused before printing
            steps.goto(fixture_server.url("form.html")),
            steps.screenshot(),  # a small page's viewport: within the bound
            steps.evaluate("document.title"),  # the lease is fine afterwards
            continue_on_error=True,
            timeout=60,
        )
        kinds = [r.error_kind for r in results]
        too_large = ["too_large"] * 5
        assert kinds == ["", *too_large, "", "", ""], [
            (r.error_kind, r.error_message) for r in results
        ]
        assert "limit is 100000" in results[1].error_message
        assert "pixels" in results[4].error_message and "pages" in results[5].error_message
        assert results[7].data.startswith(b"\x89PNG") and len(results[7].data) <= LIMIT
        assert all(not r.text and not r.json and not r.data for r in results[1:6])
        assert results[8].value == "Fixture form"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("(() => { const a = {}; a.self = a; return a; })()", "circular"),
        ("NaN", "NaN"),
        ("[1, Infinity]", "Infinity"),
        ("({n: 10n})", "BigInt"),
        ("(() => { let v = 1; for (let i = 0; i < 200; i++) v = [v]; return v; })()", "deeper"),
    ],
)
async def test_values_json_cannot_hold_are_clean_script_errors(
    broker_factory: BrokerFactory, expression: str, message: str
) -> None:
    running = await broker_factory()
    async with running.client.lease() as lease:
        result = (await lease.run(steps.evaluate(expression), timeout=30))[0]
        assert result.error_kind == "script_error", result
        assert message.lower() in result.error_message.lower(), result.error_message
        fine = (await lease.run(steps.evaluate("({a: [1, 2, {b: null}], s: 'ok'})")))[0]
        assert fine.value == {"a": [1, 2, {"b": None}], "s": "ok"}


async def test_pages_a_site_opens_are_bounded_per_lease(broker_factory: BrokerFactory) -> None:
    running = await broker_factory(max_pages_per_lease=3)
    engine = running.broker.engines[EngineName.CHROMIUM]
    async with running.client.lease() as lease:
        opened = await lease.run(
            steps.evaluate("[1, 2, 3, 4, 5, 6].map(() => !!window.open('about:blank')).length"),
            timeout=30,
        )
        assert opened.ok
        for _ in range(100):  # the pages past the limit are closed as they open
            if engine.census().pages <= 3:
                break
            await asyncio.sleep(0.05)
        assert engine.census().pages <= 3
    # (the fixture checks that no page outlives the lease)


LATE = """(() => {
  const add = (id, text) => {
    const p = document.createElement('p'); p.id = id; p.textContent = text; document.body.append(p);
  };
  setTimeout(() => add('late', 'late text'), 300);
  setTimeout(() => add('late-big', 'x'.repeat(200000)), 300);
  return true;
})()"""


@pytest.mark.parametrize("engine", [Engine.CHROMIUM, Engine.FIREFOX])
async def test_text_waits_for_its_element_and_stays_bounded(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: Engine
) -> None:
    """get_text answers at once for an element already there, and waits (as a locator does,
    within the step timeout) for one that is not there yet; either way under the byte bound."""
    running = await broker_factory(
        engines=[EngineName.CHROMIUM, EngineName.FIREFOX], max_result_bytes=LIMIT
    )
    async with running.client.lease(engine=engine) as lease:
        results = await lease.run(
            steps.goto(fixture_server.url("form.html")),
            steps.evaluate(LATE),
            steps.text("h1"),  # there already
            steps.text("#late", timeout_s=10),  # appears after 300 ms
            steps.text("#late-big", timeout_s=10),  # appears, over the bound
            steps.text("#big", timeout_s=1),  # never appears: the step's timeout
            steps.text("h1 >> nth=5", timeout_s=1),
            continue_on_error=True,
            timeout=60,
        )
        kinds = [r.error_kind for r in results]
        assert kinds[:5] == ["", "", "", "", "too_large"], [r.error_message for r in results]
        assert results[3].text == "late text"
        assert results[2].text == "Fixture"
        assert kinds[5:] == ["timeout", "timeout"]

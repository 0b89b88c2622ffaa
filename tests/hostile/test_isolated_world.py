"""A page that lies to every tool a bound could be measured with, against reads measured in a
world of the broker's own.

The page replaces String, Array, JSON, Math, TextEncoder and XMLSerializer, and the getters a
read goes through (outerHTML, innerHTML, innerText, textContent, getAttribute, the title), so
that its own world reports a small page while its DOM holds megabytes. The broker measures in a
world the page cannot reach (a CDP isolated world on Chromium, Playwright's utility world on
Firefox), so the reads are refused TOO_LARGE, naming the bound, and nothing big crosses. On
Chromium a content read and a page's title also come from that world, so a lying page still
gets its real content read.
"""

from __future__ import annotations

from typing import Any

import pytest

from broker.model.options import EngineName
from browserbroker import Engine, steps
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite
from tests.hostile.test_result_and_disk_bounds import _sizes

pytestmark = pytest.mark.browser

MIB = 1024 * 1024
ENGINES = [Engine.CHROMIUM, Engine.FIREFOX]
BOTH = [EngineName.CHROMIUM, EngineName.FIREFOX]

# Everything the page's own world could measure with now lies. It runs from a timer, after the
# step that installs it has answered (that answer is made with JSON.stringify too).
LIE_EVERYWHERE = """(() => { setTimeout(() => {
  const small = () => "<html><body>small</body></html>";
  const lie = (value) => ({ get: () => value, set() {}, configurable: true });
  for (const proto of [String.prototype, Array.prototype]) {
    for (const name of Object.getOwnPropertyNames(proto)) {
      if (name === "constructor" || name === "length") continue;
      try { proto[name] = function () { return "lie"; }; } catch (_) {}
    }
  }
  JSON.stringify = () => "1"; JSON.parse = () => 1;
  Math.max = () => 1; Math.min = () => 1;
  TextEncoder.prototype.encode = () => new Uint8Array(1);
  XMLSerializer.prototype.serializeToString = () => "";
  Object.defineProperty(Element.prototype, "outerHTML", lie(small()));
  Object.defineProperty(Element.prototype, "innerHTML", lie("small"));
  Object.defineProperty(HTMLElement.prototype, "innerText", lie("small"));
  Object.defineProperty(Node.prototype, "textContent", lie("small"));
  Element.prototype.getAttribute = () => "small";
  Object.defineProperty(Document.prototype, "title", lie("a small title"));
  window.__lying = true;
}, 0); return 1; })()"""

GROW = (
    "(() => { const d = document.createElement('div'); d.id = 'huge';"
    " d.style.display = 'none'; d.setAttribute('data-huge', 'z'.repeat(3_000_000));"
    " d.textContent = 'y'.repeat(3_000_000); document.body.append(d);"
    " document.title = 'the real title'; return 1; })()"
)


async def _run(factory: BrokerFactory, site: FixtureSite, engine: Engine, *work: Any) -> list[Any]:
    """`work` on the fixture form, in a lease held to a 1 MiB result bound, each step run
    whatever the one before did; then the lease still reads a fresh page."""
    running = await factory(engines=BOTH, max_result_bytes=MIB)
    async with running.client.lease(engine=engine) as lease:
        form = steps.goto(site.url("form.html"))
        results = list(await lease.run(form, *work, continue_on_error=True, timeout=240))
        after = await lease.run(form, steps.text("h1"))
        assert [r.text for r in after] == ["", "Fixture"], _sizes(after)
    return results


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_page_that_lies_about_its_size_is_refused_too_large(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: Engine
) -> None:
    """In its own world the page is small; its DOM is 6 MB against a 1 MiB bound."""
    results = await _run(
        broker_factory,
        fixture_server,
        engine,
        steps.evaluate(GROW),
        steps.evaluate(LIE_EVERYWHERE),
        steps.wait_for_function("window.__lying === true"),
        steps.content(),
        steps.text("#huge"),
        steps.attribute("#huge", "data-huge"),
    )
    kinds = [r.error_kind for r in results]
    assert kinds == ["", "", "", "", "too_large", "too_large", "too_large"], _sizes(results)
    for result, what in zip(results[4:], ("content", "text", "attribute"), strict=True):
        assert f"the {what} is" in result.error_message, result.error_message
        assert "the limit is 1048576" in result.error_message, result.error_message
    # Nothing big crossed: no result and no message holds more than a line.
    assert all(len(r.text) + len(r.json) + len(r.data) <= 1000 for r in results[4:])
    assert all(len(r.error_message) <= 1000 for r in results)


async def test_a_lying_page_gets_its_real_content_and_title_read_on_chromium(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    """Within the bound, the page's lies do not become the result: Chromium reads the content
    and the title in a CDP isolated world, which sees the real DOM. (Firefox and Camoufox,
    and text and attributes on every engine, get their value from the page's world, measured
    first in Playwright's utility world: see isolated.py.)"""
    results = await _run(
        broker_factory,
        fixture_server,
        Engine.CHROMIUM,
        steps.evaluate("(() => { document.title = 'the real title'; return 1; })()"),
        steps.evaluate(LIE_EVERYWHERE),
        steps.wait_for_function("window.__lying === true"),
        steps.content(),
        steps.list_pages(),
    )
    assert all(r.ok for r in results), _sizes(results)
    content = results[4].text
    assert content.startswith("<!DOCTYPE html><html><head><title>"), content[:200]
    assert '<h1 id="title">Fixture</h1>' in content
    assert "small" not in content
    assert [p.title for p in results[5].pages] == ["the real title"]


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_result_within_the_bound_is_read_whole(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: Engine
) -> None:
    """An honest page just under the bound: both worlds agree and the result is whole."""
    results = await _run(
        broker_factory,
        fixture_server,
        engine,
        steps.evaluate(
            "(() => { const d = document.createElement('p'); d.id = 'big';"
            " d.setAttribute('data-big', 'é'.repeat(250_000));"
            " d.textContent = 'w'.repeat(400_000); document.body.append(d); return 1; })()"
        ),
        steps.text("#big"),
        steps.attribute("#big", "data-big"),
        steps.attribute("#big", "data-missing"),
        steps.content(),
        # Measured once the element is there, as a locator waits.
        steps.evaluate(
            "(() => { setTimeout(() => { const p = document.createElement('p'); p.id = 'later';"
            " p.textContent = 'late'; p.setAttribute('data-é:x', 'v'); document.body.append(p);"
            " }, 300); return 1; })()"
        ),
        steps.text("#later"),
        steps.attribute("#later", "data-é:x"),
        steps.text("#never", timeout_s=1),
    )
    assert [r.ok for r in results] == [True] * 9 + [False], _sizes(results)
    assert [r.text for r in results[7:9]] == ["late", "v"]
    assert results[9].error_kind == "timeout", _sizes(results)
    assert results[2].text == "w" * 400_000
    assert results[3].text == "é" * 250_000 and results[3].found
    assert not results[4].found
    assert "w" * 400_000 in results[5].text

"""What the warm attachable-pool tests do in a lent browser, whatever its protocol: leave a trace
of the lease in it, find no trace of an earlier lease, and be refused a host the tenant may not
reach."""

from __future__ import annotations

import hashlib

from playwright.async_api import Browser
from playwright.async_api import Error as PlaywrightError

from browserbroker import AsyncLease, steps
from tests.fixture_site import FixtureSite


def tenant(token: str) -> dict[str, object]:
    """A tenant of one lease, denied the fixture site (which the operator may reach)."""
    return {
        "name": "alpha",
        "token_sha256": [hashlib.sha256(token.encode()).hexdigest()],
        "max_leases": 1,
        "max_queued": 0,
        "egress_deny_cidrs": ["127.0.0.1/32"],
    }


async def leave_traces(browser: Browser, lease: AsyncLease, site: FixtureSite) -> None:
    """A cookie and local storage in the browser, and a Run of the broker's beside the client."""
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(site.url("form.html"))
    await page.evaluate("localStorage.setItem('who', 'ada'); document.cookie = 'who=ada'")
    assert await context.cookies()
    result = await lease.run(steps.goto(site.url("form.html")), timeout=60)
    assert result.raise_for_failure()[0].http_status == 200


async def no_traces(browser: Browser, site: FixtureSite) -> None:
    """Nothing an earlier lease left: no cookie, no storage."""
    for context in browser.contexts:
        assert not await context.cookies()
    page = await (await browser.new_context()).new_page()
    await page.goto(site.url("form.html"))
    assert await page.evaluate("[localStorage.length, document.cookie]") == [0, ""]


async def refused_the_site(browser: Browser, site: FixtureSite) -> None:
    """The client's page cannot load the fixture site: the lease's route refuses it."""
    page = await (await browser.new_context()).new_page()
    try:
        response = await page.goto(site.url("form.html"), timeout=30_000)
        assert response is None or response.status != 200
        # The route's refusal, naming the tenant's rule.
        assert "denied by egress rule 'deny_cidrs'" in await page.content()
    except PlaywrightError as exc:  # refused by the route: a network error is the answer
        assert "ERR_" in str(exc) or "NS_ERROR" in str(exc), exc
    assert "Fixture" not in await page.content()

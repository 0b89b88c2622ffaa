"""Navigation on Playwright: goto, history, reload, each answer checked as the egress route
gave it."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.async_api import Response

from broker.egress.proxy import DENIED_HEADER, UPSTREAM_HEADER
from broker.engines.playwright.bounded_results import StepRefused
from broker.engines.playwright.steps.dispatch import StepScope, handles
from broker.model.steps.base import StepErrorKind, StepOutcome
from broker.model.steps.navigation import GoBack, GoForward, Goto, HistoryStep, Reload


@handles(Goto)
async def goto(scope: StepScope, action: Goto, out: StepOutcome) -> None:
    response = await scope.page.goto(
        action.href,  # the canonical form the edge judged
        wait_until=action.wait_until,  # type: ignore[arg-type]
        timeout=scope.timeout_ms,
    )
    _check_route_answer(action.href, response, out)


@handles(GoBack, GoForward, Reload)
async def history(scope: StepScope, action: HistoryStep, out: StepOutcome) -> None:
    page = scope.page
    move = {GoBack: page.go_back, GoForward: page.go_forward, Reload: page.reload}[type(action)]
    response = await move(wait_until=action.wait_until, timeout=scope.timeout_ms)  # type: ignore[arg-type]
    _check_route_answer(page.url, response, out)


def _check_route_answer(url: str, response: Response | None, out: StepOutcome) -> None:
    """A navigation's main response as the egress route answered it: a refusal is BLOCKED, an
    unreachable destination a NAVIGATION error (the route answers plain HTTP with headers)."""
    out.http_status = response.status if response is not None else 0
    headers = response.headers if response is not None else {}
    rule = headers.get(DENIED_HEADER.lower())
    if rule is not None:
        raise StepRefused(
            StepErrorKind.BLOCKED, f"{url_origin(url)} denied by egress rule {rule!r}"
        )
    unreachable = headers.get(UPSTREAM_HEADER.lower())
    if unreachable is not None:
        raise StepRefused(
            StepErrorKind.NAVIGATION,
            f"{url_origin(url)}: {unreachable} (net::ERR_{unreachable.upper()})",
        )


def url_origin(url: str) -> str:
    """scheme://host:port of a URL: what may appear in messages (no path, query or secrets)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")

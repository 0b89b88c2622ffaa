"""Waits on Playwright: for an element, a load state, a URL, a response, a script's
condition."""

from __future__ import annotations

import asyncio
import json

from broker.engines.playwright.bounded_results import bounded_json
from broker.engines.playwright.steps.dispatch import StepScope, handles
from broker.model.steps.base import StepOutcome
from broker.model.steps.globs import url_glob
from broker.model.steps.waits import (
    WaitForFunction,
    WaitForLoadState,
    WaitForResponse,
    WaitForSelector,
    WaitForUrl,
)


@handles(WaitForSelector)
async def wait_for_selector(scope: StepScope, action: WaitForSelector, out: StepOutcome) -> None:
    await scope.frame.wait_for_selector(
        action.selector,
        state=action.state,  # type: ignore[arg-type]
        timeout=scope.timeout_ms,
    )


@handles(WaitForLoadState)
async def wait_for_load_state(scope: StepScope, action: WaitForLoadState, out: StepOutcome) -> None:
    await scope.frame.wait_for_load_state(action.state, timeout=scope.timeout_ms)  # type: ignore[arg-type]


@handles(WaitForUrl)
async def wait_for_url(scope: StepScope, action: WaitForUrl, out: StepOutcome) -> None:
    glob = url_glob(action.url)
    # A predicate, not the glob: Playwright would match a glob with a backtracking regex.
    await scope.page.wait_for_url(
        lambda url: glob.matches(url),
        wait_until=action.wait_until,  # type: ignore[arg-type]
        timeout=scope.timeout_ms,
    )


@handles(WaitForResponse)
async def wait_for_response(scope: StepScope, action: WaitForResponse, out: StepOutcome) -> None:
    async with asyncio.timeout(scope.timeout_s):
        seen = await scope.pages.responses.wait_for(action.url)
    out.http_status, out.text = seen.status, seen.url


@handles(WaitForFunction)
async def wait_for_function(scope: StepScope, action: WaitForFunction, out: StepOutcome) -> None:
    arg = json.loads(action.arg_json) if action.arg_json else None
    handle = await scope.frame.wait_for_function(
        action.expression, arg=arg, timeout=scope.timeout_ms
    )
    out.json = await bounded_json(handle, scope.limits.max_bytes)

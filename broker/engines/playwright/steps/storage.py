"""What the lease's context stores, on Playwright: its storage state and cookies."""

from __future__ import annotations

import json
from typing import Any

from broker.engines.playwright.bounded_results import check_size
from broker.engines.playwright.steps.dispatch import StepScope, handles
from broker.model.steps.base import StepOutcome
from broker.model.steps.storage import AddCookies, ClearCookies, Cookie, GetCookies, StorageState


@handles(StorageState)
async def storage_state(scope: StepScope, action: StorageState, out: StepOutcome) -> None:
    state = await scope.context.storage_state()
    out.data = check_size(json.dumps(state).encode(), scope.limits.max_bytes)


@handles(GetCookies)
async def get_cookies(scope: StepScope, action: GetCookies, out: StepOutcome) -> None:
    cookies = await scope.context.cookies(list(action.urls) or None)
    out.json = check_size(json.dumps(cookies), scope.limits.max_bytes)


@handles(AddCookies)
async def add_cookies(scope: StepScope, action: AddCookies, out: StepOutcome) -> None:
    await scope.context.add_cookies([_cookie(c) for c in action.cookies])


@handles(ClearCookies)
async def clear_cookies(scope: StepScope, action: ClearCookies, out: StepOutcome) -> None:
    await scope.context.clear_cookies()


def _cookie(cookie: Cookie) -> Any:
    out: dict[str, Any] = {"name": cookie.name, "value": cookie.value}
    if cookie.url:
        out["url"] = cookie.url
    else:
        out["domain"], out["path"] = cookie.domain, cookie.path
    if cookie.expires:
        out["expires"] = cookie.expires
    out["httpOnly"], out["secure"] = cookie.http_only, cookie.secure
    if cookie.same_site:
        out["sameSite"] = cookie.same_site
    return out

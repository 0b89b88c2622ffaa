"""The lease's pages on Playwright: listing them, making one current, closing one, bringing one
to the front."""

from __future__ import annotations

import asyncio
import contextlib

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

from broker.common.cleanup import bounded
from broker.engines.playwright import isolated
from broker.engines.playwright.bounded_results import URL_CHARS, StepRefused, truncated
from broker.engines.playwright.pages import TITLE_TIMEOUT_S
from broker.engines.playwright.steps.dispatch import StepScope, handles
from broker.model.steps.base import PageInfo, StepErrorKind, StepOutcome
from broker.model.steps.pages import BringToFront, ClosePage, ListPages, SwitchPage


@handles(ListPages)
async def list_pages(scope: StepScope, action: ListPages, out: StepOutcome) -> None:
    """The lease's pages; their titles and URLs are the pages' to choose, so both are cut
    (the title in the page, before it crosses to the broker)."""
    current = scope.current.page
    for page in scope.pages.open_pages():
        title = ""
        opener: Page | None = None
        with contextlib.suppress(PlaywrightError, TimeoutError):
            title = await bounded(isolated.title(page), TITLE_TIMEOUT_S)
            opener = await bounded(page.opener(), TITLE_TIMEOUT_S)
        out.pages.append(
            PageInfo(
                id=scope.pages.id_of(page),
                url=truncated(page.url, URL_CHARS),
                title=title,
                current=page is current,
                opener_id=scope.pages.id_of(opener) if opener is not None else "",
            )
        )


@handles(SwitchPage)
async def switch_page(scope: StepScope, action: SwitchPage, out: StepOutcome) -> None:
    page_id = action.page_id
    found = scope.pages.get(page_id) if page_id else await scope.pages.find(action.url)
    if found is None:
        raise StepRefused(StepErrorKind.BROWSER, f"no open page {page_id!r}")
    scope.current.page = found
    with contextlib.suppress(PlaywrightError):
        await found.bring_to_front()


@handles(ClosePage)
async def close_page(scope: StepScope, action: ClosePage, out: StepOutcome) -> None:
    page_id = action.page_id
    target = scope.pages.get(page_id) if page_id else scope.current.page
    if target is None:
        raise StepRefused(StepErrorKind.BROWSER, f"no open page {page_id!r}")
    await target.close(run_before_unload=False)
    await scope.current.ensure_open()


@handles(BringToFront)
async def bring_to_front(scope: StepScope, action: BringToFront, out: StepOutcome) -> None:
    async with asyncio.timeout(scope.timeout_s):  # Playwright has no timeout for it
        await scope.page.bring_to_front()

"""The steps that act in one page (or a frame of it) and in the lease's context, on Playwright.

The page-bound bounds (pixels, PDF pages, result and download bytes) are checked here, before
the browser does the work where it can.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
from dataclasses import dataclass
from typing import Any

from playwright.async_api import BrowserContext, Frame, Page, Response
from playwright.async_api import Error as PlaywrightError

from broker.egress.proxy import DENIED_HEADER, UPSTREAM_HEADER
from broker.engines.base import ResultLimits
from broker.engines.playwright.bounded_results import (
    BOUNDED_CONTENT,
    PAGE_SIZE,
    TO_BOUNDED_JSON,
    StepRefused,
    bounded_text,
    check_size,
    text_of_first,
)
from broker.engines.playwright.pages import LeasePages
from broker.model.options import EngineName
from broker.model.steps.base import (
    Action,
    Click,
    Evaluate,
    Fill,
    GetAttribute,
    GetContent,
    GetText,
    Goto,
    Pdf,
    Press,
    Screenshot,
    StepErrorKind,
    StepOutcome,
    WaitForLoadState,
    WaitForSelector,
)
from broker.model.steps.checks import glob_regex
from broker.model.steps.extra import (
    AddCookies,
    Check,
    ClearCookies,
    Cookie,
    Download,
    GetCookies,
    GoBack,
    GoForward,
    Hover,
    Reload,
    Scroll,
    SelectOption,
    SetInputFiles,
    StorageState,
    Type,
    Uncheck,
    WaitForFunction,
    WaitForResponse,
    WaitForUrl,
)

SCROLL_BY = "([x, y]) => window.scrollBy(x, y)"


@dataclass
class StepScope:
    """Where a step acts: a page of the lease, a frame of it (its main frame by default), and
    what the lease allows."""

    page: Page
    frame: Frame
    context: BrowserContext
    pages: LeasePages
    limits: ResultLimits
    engine: EngineName
    supports_pdf: bool


async def frame_of(page: Page, frame_selector: str, ms: float) -> Frame:
    """The document of the <iframe> `frame_selector` names; the page's own without one."""
    if not frame_selector:
        return page.main_frame
    element = await page.wait_for_selector(frame_selector, state="attached", timeout=ms)
    frame = await element.content_frame() if element is not None else None
    if frame is None:
        raise StepRefused(StepErrorKind.SELECTOR, f"{frame_selector!r} is not an iframe")
    return frame


async def perform(scope: StepScope, action: Action, timeout_s: float, out: StepOutcome) -> None:
    page, frame = scope.page, scope.frame
    ms = max(1.0, timeout_s * 1000)
    limit = scope.limits.max_bytes
    match action:
        case Goto(url=url, wait_until=wait_until):
            response = await page.goto(url, wait_until=wait_until, timeout=ms)  # type: ignore[arg-type]
            _check_route_answer(url, response, out)
        case Click(selector=selector):
            try:
                await frame.click(selector, timeout=ms)
            except PlaywrightError:
                if not page.is_closed():
                    raise
                # The click closed its own page (a popup that closes itself when done): done.
        case Fill(selector=selector, value=value):
            await frame.fill(selector, value, timeout=ms)
        case Press(selector=selector, key=key):
            await frame.press(selector, key, timeout=ms)
        case WaitForSelector(selector=selector, state=state):
            await frame.wait_for_selector(selector, state=state, timeout=ms)  # type: ignore[arg-type]
        case WaitForLoadState(state=state):
            await frame.wait_for_load_state(state, timeout=ms)  # type: ignore[arg-type]
        case Evaluate(expression=expression, arg_json=arg_json):
            # Playwright has no timeout for evaluate; the Run's cancellation stops the script.
            async with asyncio.timeout(timeout_s):
                if arg_json:
                    handle = await frame.evaluate_handle(expression, json.loads(arg_json))
                else:
                    handle = await frame.evaluate_handle(expression)
                out.json = await _bounded_json(handle, limit)
        case GetContent():
            async with asyncio.timeout(timeout_s):
                out.text = await bounded_text(frame.evaluate(BOUNDED_CONTENT, limit))
        case GetText(selector=selector):
            out.text = await bounded_text(text_of_first(frame, selector, limit, ms))
        case GetAttribute(selector=selector, name=name):
            attribute = await frame.locator(selector).first.get_attribute(name, timeout=ms)
            out.found = attribute is not None
            out.text = check_size(attribute or "", limit)
        case Screenshot(full_page=full_page):
            await _check_pixels(page, full_page, scope.limits.max_screenshot_pixels)
            data = await page.screenshot(full_page=full_page, timeout=ms, type="png")
            out.data = check_size(data, limit)
        case Pdf():
            if not scope.supports_pdf:
                raise StepRefused(
                    StepErrorKind.UNSUPPORTED, f"pdf is not supported by {scope.engine.value}"
                )
            await _check_pdf_pages(page, scope.limits.max_pdf_pages)
            async with asyncio.timeout(timeout_s):
                out.data = check_size(await page.pdf(), limit)
        case _:
            await _perform_more(scope, action, timeout_s, out)


async def _perform_more(
    scope: StepScope, action: Action, timeout_s: float, out: StepOutcome
) -> None:
    page, frame = scope.page, scope.frame
    ms = max(1.0, timeout_s * 1000)
    match action:
        case Hover(selector=selector):
            await frame.hover(selector, timeout=ms)
        case Check(selector=selector):
            await frame.check(selector, timeout=ms)
        case Uncheck(selector=selector):
            await frame.uncheck(selector, timeout=ms)
        case SelectOption(selector=selector, values=values):
            selected = await frame.select_option(selector, list(values), timeout=ms)
            out.json = json.dumps(selected)
        case Type(selector=selector, text=text, delay_s=delay_s):
            locator = frame.locator(selector).first
            await locator.press_sequentially(text, delay=delay_s * 1000, timeout=ms)
        case Scroll(selector=selector, delta_x=dx, delta_y=dy):
            if selector:
                await frame.locator(selector).first.scroll_into_view_if_needed(timeout=ms)
            else:
                async with asyncio.timeout(timeout_s):
                    await frame.evaluate(SCROLL_BY, [dx, dy])
        case GoBack(wait_until=wait_until):
            response = await page.go_back(wait_until=wait_until, timeout=ms)  # type: ignore[arg-type]
            _check_route_answer(page.url, response, out)
        case GoForward(wait_until=wait_until):
            response = await page.go_forward(wait_until=wait_until, timeout=ms)  # type: ignore[arg-type]
            _check_route_answer(page.url, response, out)
        case Reload(wait_until=wait_until):
            response = await page.reload(wait_until=wait_until, timeout=ms)  # type: ignore[arg-type]
            _check_route_answer(page.url, response, out)
        case WaitForUrl(url=url, wait_until=wait_until):
            regex = glob_regex(url)
            await page.wait_for_url(
                lambda seen: seen == url or bool(regex.match(seen)),
                wait_until=wait_until,  # type: ignore[arg-type]
                timeout=ms,
            )
        case WaitForResponse(url=url):
            async with asyncio.timeout(timeout_s):
                seen = await scope.pages.responses.wait_for(url)
            out.http_status, out.text = seen.status, seen.url
        case WaitForFunction(expression=expression, arg_json=arg_json):
            arg = json.loads(arg_json) if arg_json else None
            handle = await frame.wait_for_function(expression, arg=arg, timeout=ms)
            out.json = await _bounded_json(handle, scope.limits.max_bytes)
        case SetInputFiles(selector=selector, files=files):
            payloads: Any = [
                {
                    "name": f.name,
                    "mimeType": f.mime_type or "application/octet-stream",
                    "buffer": f.data,
                }
                for f in files
            ]
            await frame.set_input_files(selector, payloads, timeout=ms)
        case Download(selector=selector):
            await _download(scope, selector, timeout_s, out)
        case StorageState():
            state = await scope.context.storage_state()
            out.data = check_size(json.dumps(state).encode(), scope.limits.max_bytes)
        case GetCookies(urls=urls):
            cookies = await scope.context.cookies(list(urls) or None)
            out.json = check_size(json.dumps(cookies), scope.limits.max_bytes)
        case AddCookies(cookies=cookies):
            await scope.context.add_cookies([_cookie(c) for c in cookies])
        case ClearCookies():
            await scope.context.clear_cookies()


async def _download(scope: StepScope, selector: str, timeout_s: float, out: StepOutcome) -> None:
    """Click, capture the download it starts, read it under the bound, delete it."""
    waiting = scope.pages.expect_download()
    download = None
    try:
        async with asyncio.timeout(timeout_s):
            await scope.frame.click(selector, timeout=max(1.0, timeout_s * 1000))
            download = await waiting
            path = await download.path()
        limit = min(scope.limits.max_download_bytes, scope.limits.max_bytes)
        out.data = await asyncio.to_thread(_read_bounded, path, limit)
        out.text = download.suggested_filename
    finally:
        scope.pages.stop_expecting()
        if download is not None:
            with contextlib.suppress(PlaywrightError):
                await download.cancel()
                await download.delete()


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


def _read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    size = os.path.getsize(path)
    if size > limit:
        raise StepRefused(
            StepErrorKind.TOO_LARGE, f"the download is {size} bytes; the limit is {limit}"
        )
    with open(path, "rb") as f:
        return f.read(limit)


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


async def _bounded_json(handle: Any, limit: int) -> str:
    try:
        return await bounded_text(handle.evaluate(TO_BOUNDED_JSON, limit))
    finally:
        with contextlib.suppress(PlaywrightError):
            await handle.dispose()


async def _check_pdf_pages(page: Page, limit: int) -> None:
    """Refuse a PDF that would run past the page bound before the browser prints it.

    An estimate: the page's height once reflowed to a Letter sheet's width (816 CSS
    pixels), over a sheet's height (1056 CSS pixels)."""
    width, height = await page.evaluate(PAGE_SIZE)
    pages = math.ceil(height * max(1.0, width / 816) / 1056)
    if pages > limit:
        raise StepRefused(
            StepErrorKind.TOO_LARGE,
            f"the PDF would run to about {pages} pages; the limit is {limit} pages",
        )


async def _check_pixels(page: Page, full_page: bool, limit: int) -> None:
    """Refuse a screenshot larger than the bound before the browser renders it."""
    if full_page:
        width, height = await page.evaluate(PAGE_SIZE)
    else:
        size = page.viewport_size or {"width": 0, "height": 0}
        width, height = size["width"], size["height"]
    if width * height > limit:
        raise StepRefused(
            StepErrorKind.TOO_LARGE,
            f"the screenshot would be {width}x{height} pixels; the limit is {limit} pixels",
        )


def url_origin(url: str) -> str:
    """scheme://host:port of a URL: what may appear in messages (no path, query or secrets)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")

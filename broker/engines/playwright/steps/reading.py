"""Reading the page on Playwright: scripts' values, content, text, attributes, screenshots,
PDFs and downloads, each held to the lease's bounds (checked before the browser does the work
where it can)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import math
import os
import stat

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import FloatRect, Page

from broker.common.urls import is_download_source
from broker.engines.playwright import isolated
from broker.engines.playwright.bounded_results import (
    PAGE_SIZE,
    StepRefused,
    check_size,
    evaluate_bounded,
    finished_download,
)
from broker.engines.playwright.steps.dispatch import StepScope, handles
from broker.model.steps.base import StepErrorKind, StepOutcome
from broker.model.steps.reading import (
    Download,
    Evaluate,
    GetAttribute,
    GetContent,
    GetText,
    Pdf,
    Screenshot,
)


@handles(Evaluate)
async def evaluate(scope: StepScope, action: Evaluate, out: StepOutcome) -> None:
    # Playwright has no timeout for evaluate; the Run's cancellation stops the script.
    arg = json.loads(action.arg_json) if action.arg_json else None
    async with asyncio.timeout(scope.timeout_s):
        out.json = await evaluate_bounded(
            scope.frame, action.expression, bool(action.arg_json), arg, scope.limits.max_bytes
        )


@handles(GetContent)
async def get_content(scope: StepScope, action: GetContent, out: StepOutcome) -> None:
    async with asyncio.timeout(scope.timeout_s):
        out.text = await isolated.content(scope.frame, scope.limits.max_bytes)


@handles(GetText)
async def get_text(scope: StepScope, action: GetText, out: StepOutcome) -> None:
    limit, ms = scope.limits.max_bytes, scope.timeout_ms
    async with asyncio.timeout(scope.timeout_s):  # measured, then read: two waits in one
        out.text = await isolated.text(scope.frame, action.selector, limit, ms)


@handles(GetAttribute)
async def get_attribute(scope: StepScope, action: GetAttribute, out: StepOutcome) -> None:
    limit, ms = scope.limits.max_bytes, scope.timeout_ms
    async with asyncio.timeout(scope.timeout_s):
        value = await isolated.attribute(scope.frame, action.selector, action.name, limit, ms)
    out.found = value is not None
    out.text = value or ""


@handles(Screenshot)
async def screenshot(scope: StepScope, action: Screenshot, out: StepOutcome) -> None:
    page, full_page = scope.page, action.full_page
    clip = await _bounded_clip(page, full_page, scope.limits.max_screenshot_pixels)
    data = await page.screenshot(
        full_page=full_page, clip=clip, timeout=scope.timeout_ms, type="png"
    )
    out.data = check_size(data, scope.limits.max_bytes)


@handles(Pdf)
async def pdf(scope: StepScope, action: Pdf, out: StepOutcome) -> None:
    if not scope.supports_pdf:
        raise StepRefused(
            StepErrorKind.UNSUPPORTED, f"pdf is not supported by {scope.engine.value}"
        )
    await _check_pdf_pages(scope.page, scope.limits.max_pdf_pages)
    async with asyncio.timeout(scope.timeout_s):
        out.data = check_size(await scope.page.pdf(), scope.limits.max_bytes)


@handles(Download)
async def download(scope: StepScope, action: Download, out: StepOutcome) -> None:
    """Click, capture the download it starts, read it under the bound, delete it."""
    limit = min(scope.limits.max_download_bytes, scope.limits.max_bytes)
    waiting = scope.pages.expect_download()
    started = None
    try:
        async with asyncio.timeout(scope.timeout_s):
            await scope.frame.click(action.selector, timeout=scope.timeout_ms)
            started = await waiting
            if not is_download_source(started.url):  # a link to file: reads the host
                raise StepRefused(StepErrorKind.BLOCKED, "a download from a file: URL")
            path = await finished_download(started, limit)
        out.data = await asyncio.to_thread(_read_bounded, path, limit)
        out.text = started.suggested_filename
    finally:
        scope.pages.stop_expecting()
        if started is not None:
            with contextlib.suppress(PlaywrightError):
                await started.cancel()
                await started.delete()


def _read_bounded(path: str, limit: int) -> bytes:
    """The browser's user owns the folder the file is in: it could put a link to a host file
    where its download was, so the broker opens no link and reads only a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StepRefused(StepErrorKind.BLOCKED, "the downloaded file is a link") from exc
        raise
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise StepRefused(StepErrorKind.BLOCKED, "the downloaded file is not a regular file")
        data = f.read(limit + 1)
    return check_size(data, limit)


async def _check_pdf_pages(page: Page, limit: int) -> None:
    """Refuse a PDF that would run past the page bound before the browser prints it.

    An estimate: the page's height once reflowed to a Letter sheet's width (816 CSS
    pixels), over a sheet's height (1056 CSS pixels)."""
    width, height = _pixels(await page.evaluate(PAGE_SIZE))
    pages = math.ceil(height * max(1.0, width / 816) / 1056)
    if pages > limit:
        raise StepRefused(
            StepErrorKind.TOO_LARGE,
            f"the PDF would run to about {pages} pages; the limit is {limit} pages",
        )


async def _bounded_clip(page: Page, full_page: bool, limit: int) -> FloatRect:
    """The area a screenshot may capture, from the broker's own arithmetic: the viewport the
    lease was given, or the page's size as measured in the page, refused over the bound. The
    capture is clipped to it, so a page that lies about its size only gets a smaller image
    (device scale factor 1: leases do not set another)."""
    if full_page:
        width, height = _pixels(await page.evaluate(PAGE_SIZE))
    else:
        size = page.viewport_size or {"width": 0, "height": 0}
        width, height = size["width"], size["height"]
        if not width or not height:  # no fixed viewport: the window's
            width, height = _pixels(await page.evaluate("() => [innerWidth, innerHeight]"))
    if width * height > limit:
        raise StepRefused(
            StepErrorKind.TOO_LARGE,
            f"the screenshot would be {width}x{height} pixels; the limit is {limit} pixels",
        )
    return {"x": 0, "y": 0, "width": max(1, width), "height": max(1, height)}


def _pixels(answer: object) -> tuple[int, int]:
    """Two whole pixel counts from the page, which may answer anything."""
    if isinstance(answer, list) and len(answer) == 2:
        width, height = answer
        if all(isinstance(v, int | float) and 0 <= v < 2**31 for v in (width, height)):
            return math.ceil(width), math.ceil(height)
    raise StepRefused(StepErrorKind.BROWSER, "the page's size could not be measured")

"""One lease's browser session on Playwright: a context and its current page, and the steps run
in it. With ISOLATION_BROWSER the session also has a browser of its own.

The session asks its engine only for what `SessionHost` lists, so it holds no reference to the
engine's internals (its browsers, launches, recycling).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from playwright.async_api import Browser, BrowserContext, Page
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeout

from broker.cleanup import TaskSet, bounded
from broker.egress.policy import EgressRules
from broker.egress.proxy import DENIED_HEADER, UPSTREAM_HEADER, BlockListener, EgressRoute
from broker.engines.base import LostCallback, LostCause, ResultLimits
from broker.engines.bounded_results import (
    BOUNDED_CONTENT,
    PAGE_SIZE,
    TO_BOUNDED_JSON,
    StepRefused,
    bounded_text,
    check_size,
    text_of_first,
)
from broker.engines.playwright_driver import first_line
from broker.errors import Unavailable
from broker.options import ContextOptions, EngineName, Isolation
from broker.steps import (
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
    Step,
    StepErrorKind,
    StepOutcome,
    WaitForLoadState,
    WaitForSelector,
)

log = logging.getLogger("broker.engines")

T = TypeVar("T")
# Stops whatever script is running in a page, even one that never yields (engine-specific).
Interrupter = Callable[[], Awaitable[object]]

INTERRUPT_TIMEOUT_S = 0.25
CLOSE_TIMEOUT_S = 5.0


class SessionHost(Protocol):
    """What a session needs from the engine that opened it."""

    name: EngineName
    supports_pdf: bool

    async def while_connected(self, browser: Browser, work: Awaitable[T], doing: str) -> T:
        """`work`'s result, or Unavailable as soon as `browser` goes away."""
        ...

    def is_retiring(self, browser: Browser) -> bool: ...

    async def page_interrupter(self, context: BrowserContext, page: Page) -> Interrupter | None: ...

    async def close_session(self, session: PlaywrightSession) -> None:
        """Close what the session owns and stop tracking it; idempotent."""
        ...


class PlaywrightSession:
    """A context and its current page; with ISOLATION_BROWSER also a browser of its own."""

    def __init__(
        self,
        host: SessionHost,
        browser: Browser,
        context: BrowserContext,
        page: Page,
        isolation: Isolation,
        egress: EgressRoute | None = None,
        limits: ResultLimits | None = None,
    ) -> None:
        self._host = host
        self.egress = egress  # the proxy route all of this session's traffic goes through
        self._limits = limits or ResultLimits()
        self.engine: EngineName = host.name
        self.isolation = isolation
        self.browser = browser
        self.context = context
        self.page = page
        self._lost_callback: LostCallback | None = None
        # Per page (the lease's and those the site opened): stops a script that never yields.
        self._interrupters: dict[Page, Interrupter] = {}
        self._attaching = TaskSet()
        self._closing = False
        self._resetting = False  # the page is being replaced on purpose
        self._lost = False
        self.driver_lost = False  # Playwright's driver died: nothing here can be called any more
        self._extra_pages = TaskSet()  # closes of pages opened past the per-lease limit
        self._watch_page(page)
        context.on("page", self._page_opened)

    @property
    def alive(self) -> bool:
        if self._closing or self._lost or self.driver_lost:
            return False
        return self.browser.is_connected()

    @property
    def retiring(self) -> bool:
        return self._host.is_retiring(self.browser)

    def set_lost_callback(self, callback: LostCallback | None) -> None:
        self._lost_callback = callback

    def bind_egress(self, rules: EgressRules, on_blocked: BlockListener | None) -> None:
        if self.egress is not None:
            self.egress.bind(rules, on_blocked)

    def set_interrupter(self, page: Page, interrupter: Interrupter | None) -> None:
        if interrupter is not None and not page.is_closed():
            self._interrupters[page] = interrupter
            # A crashed or closed page's CDP session must get no command: Playwright's driver
            # asserts on an answer that comes back for a session it has already dropped.
            page.on("close", self._forget_interrupter)
            page.on("crash", self._forget_interrupter)

    def _forget_interrupter(self, page: Page) -> None:
        self._interrupters.pop(page, None)

    def _page_opened(self, page: Page) -> None:
        """Pages a site opens (popups, target=_blank) count against the lease's page limit;
        one past it is closed at once. All of them close with the context, and a cancelled Run
        stops their scripts too."""
        if page is self.page or self._closing:
            return
        if len(self.context.pages) > self._limits.max_pages:
            log.info(
                "a page past the lease's limit was closed", extra={"limit": self._limits.max_pages}
            )
            self._extra_pages.spawn(_close_quietly(page))
            return
        self._attaching.spawn(self._attach_interrupter(page))

    async def _attach_interrupter(self, page: Page) -> None:
        with contextlib.suppress(Exception):  # a page without one is still closed on cancel
            interrupter = await bounded(
                self._host.page_interrupter(self.context, page), CLOSE_TIMEOUT_S
            )
            self.set_interrupter(page, interrupter)

    def _watch_page(self, page: Page) -> None:
        def crashed(crashed_page: Page) -> None:
            # A page being replaced may die on its way out; only the current one matters.
            if crashed_page is self.page and not self._resetting:
                self.mark_lost(LostCause.PAGE_CRASHED)

        page.on("crash", crashed)

    def mark_lost(self, cause: LostCause) -> None:
        """The session died on its own. Tells the owner once; intentional closes are not losses."""
        if self._closing or self._lost:
            return
        self._lost = True
        log.warning("session lost", extra={"engine": self.engine.value, "cause": cause})
        if self._lost_callback is not None:
            self._lost_callback(self, cause)

    async def execute(self, index: int, step: Step, timeout_s: float) -> StepOutcome:
        outcome = StepOutcome(index=index, action=step.name)
        started = time.perf_counter()
        mark = self.egress.last_seq() if self.egress is not None else 0
        try:
            await self._host.while_connected(
                self.browser, self._perform(step, timeout_s, outcome), "running a step"
            )
        except Unavailable as exc:  # the browser went away under the step
            outcome.ok = False
            outcome.error_kind = StepErrorKind.BROWSER
            outcome.error_message = str(exc)
            self._check_alive()
        except (PlaywrightTimeout, TimeoutError):
            outcome.ok = False
            outcome.error_kind = StepErrorKind.TIMEOUT
            outcome.error_message = f"{step.name} did not finish within {timeout_s:.3f}s"
        except PlaywrightError as exc:
            outcome.ok = False
            outcome.error_kind = _classify(step, exc)
            outcome.error_message = first_line(exc.message)
            self._check_alive()
        except StepRefused as exc:
            outcome.ok = False
            outcome.error_kind = exc.kind
            outcome.error_message = str(exc)
        except Exception as exc:
            if not self.driver_lost:
                raise
            # Playwright fails every call with a plain Exception once its driver is gone.
            outcome.ok = False
            outcome.error_kind = StepErrorKind.BROWSER
            outcome.error_message = f"browser engine lost: {exc}"
            outcome.duration_s = time.perf_counter() - started
            return outcome
        outcome.duration_s = time.perf_counter() - started
        if not outcome.ok and outcome.error_kind in _MAYBE_BLOCKED and self.egress is not None:
            blocked = self.egress.blocked_since(mark)
            if blocked:  # the step failed because the policy refused what it needed
                outcome.error_kind = StepErrorKind.BLOCKED
                outcome.error_message = f"{blocked[0].message}: {outcome.error_message}"
        if not self.page.is_closed():
            outcome.url = self.page.url
        return outcome

    def _check_alive(self) -> None:
        """After a browser error, find out at once whether the session itself died."""
        if not self.browser.is_connected():
            self.mark_lost(LostCause.ENGINE_CRASHED)
        elif self.page.is_closed() and not (self._closing or self._resetting):
            self.mark_lost(LostCause.PAGE_CRASHED)

    async def _perform(self, step: Step, timeout_s: float, out: StepOutcome) -> None:
        page = self.page
        ms = max(1.0, timeout_s * 1000)
        limit = self._limits.max_bytes
        match step.action:
            case Goto(url=url, wait_until=wait_until):
                response = await page.goto(url, wait_until=wait_until, timeout=ms)  # type: ignore[arg-type]
                out.http_status = response.status if response is not None else 0
                headers = response.headers if response is not None else {}
                rule = headers.get(DENIED_HEADER.lower())
                if rule is not None:  # a plain-HTTP navigation the route refused
                    raise StepRefused(
                        StepErrorKind.BLOCKED, f"{url_origin(url)} denied by egress rule {rule!r}"
                    )
                unreachable = headers.get(UPSTREAM_HEADER.lower())
                if unreachable is not None:  # the route could not reach it: a network error
                    raise StepRefused(
                        StepErrorKind.NAVIGATION,
                        f"{url_origin(url)}: {unreachable} (net::ERR_{unreachable.upper()})",
                    )
            case Click(selector=selector):
                await page.click(selector, timeout=ms)
            case Fill(selector=selector, value=value):
                await page.fill(selector, value, timeout=ms)
            case Press(selector=selector, key=key):
                await page.press(selector, key, timeout=ms)
            case WaitForSelector(selector=selector, state=state):
                await page.wait_for_selector(selector, state=state, timeout=ms)  # type: ignore[arg-type]
            case WaitForLoadState(state=state):
                await page.wait_for_load_state(state, timeout=ms)  # type: ignore[arg-type]
            case Evaluate(expression=expression, arg_json=arg_json):
                # Playwright has no timeout for evaluate; the Run's cancellation stops the script.
                async with asyncio.timeout(timeout_s):
                    if arg_json:
                        handle = await page.evaluate_handle(expression, json.loads(arg_json))
                    else:
                        handle = await page.evaluate_handle(expression)
                    try:
                        out.json = await bounded_text(handle.evaluate(TO_BOUNDED_JSON, limit))
                    finally:
                        with contextlib.suppress(PlaywrightError):
                            await handle.dispose()
            case GetContent():
                async with asyncio.timeout(timeout_s):
                    out.text = await bounded_text(page.evaluate(BOUNDED_CONTENT, limit))
            case GetText(selector=selector):
                out.text = await bounded_text(text_of_first(page, selector, limit, ms))
            case GetAttribute(selector=selector, name=name):
                attribute = await page.locator(selector).first.get_attribute(name, timeout=ms)
                out.found = attribute is not None
                out.text = check_size(attribute or "", limit)
            case Screenshot(full_page=full_page):
                await self._check_pixels(full_page)
                data = await page.screenshot(full_page=full_page, timeout=ms, type="png")
                out.data = check_size(data, limit)
            case Pdf():
                if not self._host.supports_pdf:
                    raise StepRefused(
                        StepErrorKind.UNSUPPORTED, f"pdf is not supported by {self.engine.value}"
                    )
                await self._check_pdf_pages()
                async with asyncio.timeout(timeout_s):
                    out.data = check_size(await page.pdf(), limit)

    async def _check_pdf_pages(self) -> None:
        """Refuse a PDF that would run past the page bound before the browser prints it.

        An estimate: the page's height once reflowed to a Letter sheet's width (816 CSS
        pixels), over a sheet's height (1056 CSS pixels)."""
        width, height = await self.page.evaluate(PAGE_SIZE)
        pages = math.ceil(height * max(1.0, width / 816) / 1056)
        limit = self._limits.max_pdf_pages
        if pages > limit:
            raise StepRefused(
                StepErrorKind.TOO_LARGE,
                f"the PDF would run to about {pages} pages; the limit is {limit} pages",
            )

    async def _check_pixels(self, full_page: bool) -> None:
        """Refuse a screenshot larger than the bound before the browser renders it."""
        if full_page:
            width, height = await self.page.evaluate(PAGE_SIZE)
        else:
            size = self.page.viewport_size or {"width": 0, "height": 0}
            width, height = size["width"], size["height"]
        limit = self._limits.max_screenshot_pixels
        if width * height > limit:
            raise StepRefused(
                StepErrorKind.TOO_LARGE,
                f"the screenshot would be {width}x{height} pixels; the limit is {limit} pixels",
            )

    async def reset_page(self) -> None:
        # Closing the pages aborts their pending navigations and running scripts in the browser:
        # the current page, and any the site opened (popups keep working otherwise).
        pages = [self.page, *(p for p in self.context.pages if p is not self.page)]
        self._resetting = True
        try:
            await self.interrupt_scripts()
            # Bounded: Chromium can acknowledge a close without closing (a close racing a
            # navigation commit). The caller then ends the lease, which closes the context.
            await bounded(
                asyncio.gather(*(p.close(run_before_unload=False) for p in pages)),
                CLOSE_TIMEOUT_S,
            )
        finally:
            self._resetting = False
        self.page = await bounded(
            self._host.while_connected(self.browser, self.context.new_page(), "replacing a page"),
            CLOSE_TIMEOUT_S,
        )
        self._watch_page(self.page)
        self.set_interrupter(self.page, await self._host.page_interrupter(self.context, self.page))

    async def interrupt_scripts(self) -> None:
        """Stop scripts that hold the pages' main threads, so closing them need not wait for a
        hang timeout (Chromium waits ~0.5 s for a busy renderer before it gives up on it).
        Only before the pages close: an interrupter also stops the next script it finds."""

        async def interrupt(interrupter: Interrupter) -> None:
            with contextlib.suppress(Exception):
                await bounded(interrupter(), INTERRUPT_TIMEOUT_S)

        if self._lost or self.driver_lost or not self.browser.is_connected():
            return  # a session that died on its own has nothing left to interrupt
        live = [i for page, i in self._interrupters.items() if not page.is_closed()]
        await asyncio.gather(*(interrupt(i) for i in live))

    async def close(self) -> None:
        self._closing = True
        await self._host.close_session(self)


# A failed step of these kinds is reported as BLOCKED when the egress policy refused a request
# while it ran (a navigation, a redirect, a fetch); a timeout or a selector miss is not.
_MAYBE_BLOCKED = frozenset(
    {StepErrorKind.NAVIGATION, StepErrorKind.SCRIPT_ERROR, StepErrorKind.BROWSER}
)


async def _close_quietly(page: Page) -> None:
    with contextlib.suppress(PlaywrightError):
        await bounded(page.close(run_before_unload=False), CLOSE_TIMEOUT_S)


def url_origin(url: str) -> str:
    """scheme://host:port of a URL: what may appear in messages (no path, query or secrets)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def _classify(step: Step, exc: PlaywrightError) -> StepErrorKind:
    message = exc.message
    if isinstance(step.action, Evaluate):
        return StepErrorKind.SCRIPT_ERROR
    if isinstance(step.action, Goto) and (
        "net::" in message or "NS_ERROR" in message or "browsingContext.navigate" in message
    ):
        return StepErrorKind.NAVIGATION
    if "selector" in message.lower() or "Unexpected token" in message:
        return StepErrorKind.SELECTOR
    return StepErrorKind.BROWSER


def context_kwargs(options: ContextOptions, egress: EgressRoute | None) -> dict[str, Any]:
    # Downloads stay off: a page cannot write files on the broker's host.
    kwargs: dict[str, Any] = {"accept_downloads": False}
    if options.viewport is not None:
        kwargs["viewport"] = {"width": options.viewport.width, "height": options.viewport.height}
    if options.user_agent:
        kwargs["user_agent"] = options.user_agent
    if options.locale:
        kwargs["locale"] = options.locale
    if options.timezone_id:
        kwargs["timezone_id"] = options.timezone_id
    if options.extra_http_headers:
        kwargs["extra_http_headers"] = dict(options.extra_http_headers)
    if options.proxy is not None:
        proxy = {"server": options.proxy.server}
        for key in ("username", "password", "bypass"):
            if getattr(options.proxy, key):
                proxy[key] = getattr(options.proxy, key)
        kwargs["proxy"] = proxy
    elif egress is not None:
        kwargs["proxy"] = {"server": egress.server_url}
    if options.ignore_https_errors:
        kwargs["ignore_https_errors"] = True
    if options.java_script_disabled:
        kwargs["java_script_enabled"] = False
    return kwargs

"""One lease's browser session on Playwright: a context and its current page, and the steps run
in it. With ISOLATION_BROWSER the session also has a browser of its own.

The session asks its engine only for what `SessionHost` lists, so it holds no reference to the
engine's internals (its browsers, launches, recycling).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from playwright.async_api import Browser, BrowserContext, Frame, Page
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeout

from broker.common.cleanup import TaskSet, bounded
from broker.egress.policy import EgressRules
from broker.egress.proxy import BlockListener, EgressRoute
from broker.engines.base import LostCallback, LostCause, ResultLimits
from broker.engines.playwright.bounded_results import (
    ERROR_CHARS,
    URL_CHARS,
    StepRefused,
    error_text,
    truncated,
)
from broker.engines.playwright.bounded_trace import BoundedTrace
from broker.engines.playwright.context import shape_page
from broker.engines.playwright.pages import LeasePages
from broker.engines.playwright.steps import StepScope, frame_of, perform
from broker.errors import Unavailable
from broker.model.options import ContextOptions, EngineName, Isolation
from broker.model.steps.base import Step, StepErrorKind, StepOutcome, Target

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
        options: ContextOptions | None = None,
    ) -> None:
        self._host = host
        self._options = options or ContextOptions()
        self.pages = LeasePages()
        self.egress = egress  # the proxy route all of this session's traffic goes through
        self._limits = limits or ResultLimits()
        self.engine: EngineName = host.name
        self.isolation = isolation
        self.browser = browser
        self.context = context
        self.page = page
        self._lost_callback: LostCallback | None = None
        self._trace: BoundedTrace | None = None
        # Per page (the lease's and those the site opened): stops a script that never yields.
        self._interrupters: dict[Page, Interrupter] = {}
        self._attaching = TaskSet()
        self._closing = False
        self._resetting = False  # the page is being replaced on purpose
        self._lost: LostCause | None = None
        self.driver_lost = False  # Playwright's driver died: nothing here can be called any more
        self._extra_pages = TaskSet()  # closes of pages opened past the per-lease limit
        self._watch_page(page)
        context.on("page", self._page_opened)

    @property
    def alive(self) -> bool:
        if self._closing or self._lost is not None or self.driver_lost:
            return False
        return self.browser.is_connected()

    @property
    def lost_cause(self) -> LostCause | None:
        return self._lost

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
        self._watch_page(page)
        self._attaching.spawn(self._attach_interrupter(page))

    async def _attach_interrupter(self, page: Page) -> None:
        with contextlib.suppress(Exception):  # a page without one is still closed on cancel
            interrupter = await bounded(
                self._host.page_interrupter(self.context, page), CLOSE_TIMEOUT_S
            )
            self.set_interrupter(page, interrupter)
        await _shape_quietly(page, self._options)  # after the interrupter (see shape_page)

    def _watch_page(self, page: Page) -> None:
        if self.pages.known(page):
            return
        self.pages.add(page)
        page.on("close", self._follow_closed)

        def crashed(crashed_page: Page) -> None:
            # A page being replaced may die on its way out; only the current one matters.
            if crashed_page is self.page and not self._resetting:
                self.mark_lost(LostCause.PAGE_CRASHED)

        page.on("crash", crashed)

    def mark_lost(self, cause: LostCause) -> None:
        """The session died on its own. Tells the owner once; intentional closes are not losses."""
        if self._closing or self._lost is not None:
            return
        self._lost = cause
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
            message = error_text(exc.message)  # a page's error can be any size; cut at once
            outcome.ok = False
            outcome.error_kind = _classify(step, exc)
            outcome.error_message = message
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
            outcome.error_message = error_text(f"browser engine lost: {exc}")
            outcome.duration_s = time.perf_counter() - started
            return outcome
        outcome.duration_s = time.perf_counter() - started
        if not outcome.ok and outcome.error_kind in _MAYBE_BLOCKED and self.egress is not None:
            blocked = self.egress.blocked_since(mark)
            if blocked:  # the step failed because the policy refused what it needed
                outcome.error_kind = StepErrorKind.BLOCKED
                outcome.error_message = f"{blocked[0].message}: {outcome.error_message}"
        outcome.page_events = self.pages.take_events()
        if not self.page.is_closed():
            outcome.url = truncated(self.page.url, URL_CHARS)  # the page's to choose
            outcome.page_id = self.pages.id_of(self.page)
        return outcome

    def _check_alive(self) -> None:
        """After a browser error, find out at once whether the session itself died."""
        if not self.browser.is_connected():
            self.mark_lost(LostCause.ENGINE_CRASHED)
        elif self.page.is_closed() and not (self._closing or self._resetting):
            self.mark_lost(LostCause.PAGE_CRASHED)

    async def _perform(self, step: Step, timeout_s: float, out: StepOutcome) -> None:
        if step.kind.target is Target.LEASE:
            # On the context and its pages: Step.page_id means nothing to it, and Playwright
            # has no timeout for it.
            async with asyncio.timeout(timeout_s):
                await perform(
                    self._scope(self.page, self.page.main_frame, timeout_s), step.action, out
                )
            return
        page = self.page
        if step.page_id:
            found = self.pages.get(step.page_id)
            if found is None:
                raise StepRefused(StepErrorKind.BROWSER, f"no open page {step.page_id!r}")
            page = found
        frame = await frame_of(page, step.frame_selector, max(1.0, timeout_s * 1000))
        await perform(self._scope(page, frame, timeout_s), step.action, out)

    def _scope(self, page: Page, frame: Frame, timeout_s: float) -> StepScope:
        return StepScope(
            page,
            frame,
            self.context,
            self.pages,
            self,
            self._limits,
            self.engine,
            self._host.supports_pdf,
            timeout_s,
        )

    async def ensure_open(self) -> None:
        """After a page closed under a step: the most recently opened page left becomes
        current, or a fresh one when none is left (the lease keeps a page)."""
        if self.page.is_closed():
            self._follow_closed(self.page)
        if self.page.is_closed():
            await self._open_page()

    async def reset_page(self) -> None:
        # Closing the pages aborts their pending navigations and running scripts in the browser:
        # the current page, and any the site opened (popups keep working otherwise). The route
        # forwards nothing until the fresh page is open: a request the closed pages' network
        # stack still had queued, or retries after its connection was cut, goes nowhere. If the
        # reset fails, the route stays held and the caller ends the lease.
        async with self._route_held():
            self._resetting = True
            try:
                await self.interrupt_scripts()
                await self._close_pages()
                await self._close_pages()  # a popup whose opening raced the first close
            finally:
                self._resetting = False
            await self._open_page()

    async def _close_pages(self) -> None:
        pages = [self.page, *(p for p in self.context.pages if p is not self.page)]
        live = [p for p in pages if not p.is_closed()]
        if not live:
            return
        # Bounded: Chromium can acknowledge a close without closing (a close racing a
        # navigation commit). The caller then ends the lease, which closes the context.
        await bounded(
            asyncio.gather(*(p.close(run_before_unload=False) for p in live)), CLOSE_TIMEOUT_S
        )

    def _route_held(self) -> contextlib.AbstractAsyncContextManager[None]:
        """The session's route forwards nothing while its work is stopped (a lease with a proxy
        of its own has no route; closing its pages is all there is)."""
        return self.egress.hold() if self.egress is not None else contextlib.nullcontext()

    async def _open_page(self) -> None:
        """A fresh current page in the same context (cookies and storage survive)."""
        page = await bounded(
            self._host.while_connected(self.browser, self.context.new_page(), "replacing a page"),
            CLOSE_TIMEOUT_S,
        )
        self.page = page
        self._watch_page(page)
        self.set_interrupter(page, await self._host.page_interrupter(self.context, page))
        await shape_page(page, self._options)

    def _follow_closed(self, page: Page) -> None:
        """The current page closed (a popup that closed itself, a close_page step): the most
        recently opened page left becomes current."""
        if page is not self.page or self._resetting or self._closing:
            return
        remaining = self.pages.open_pages()
        if remaining:
            self.page = remaining[-1]

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

    def keep_trace(self, path: str, max_bytes: int) -> None:
        """Keep the trace being recorded at `path`, held to `max_bytes` while it is written."""
        self._trace = BoundedTrace(self.context, path, max_bytes)

    async def close(self) -> None:
        self._closing = True
        if self.egress is not None:
            await self.egress.shut()  # the ended lease's traffic goes nowhere, even if it lingers
        await self._save_trace()
        await self._host.close_session(self)

    async def _save_trace(self) -> None:
        """Stop the lease's trace into its file before the context closes (see BoundedTrace).
        A trace that cannot be written is lost, never the close."""
        if self._trace is None or self.driver_lost or not self.browser.is_connected():
            return
        trace, self._trace = self._trace, None
        try:
            await trace.save()
        except Exception as exc:
            log.warning("a lease's trace could not be written: %s", exc)


# A failed step of these kinds is reported as BLOCKED when the egress policy refused a request
# while it ran (a navigation, a redirect, a fetch); a timeout or a selector miss is not.
_MAYBE_BLOCKED = frozenset(
    {StepErrorKind.NAVIGATION, StepErrorKind.SCRIPT_ERROR, StepErrorKind.BROWSER}
)


async def _shape_quietly(page: Page, options: ContextOptions) -> None:
    with contextlib.suppress(PlaywrightError, TimeoutError):
        await bounded(shape_page(page, options), CLOSE_TIMEOUT_S)


async def _close_quietly(page: Page) -> None:
    with contextlib.suppress(PlaywrightError):
        await bounded(page.close(run_before_unload=False), CLOSE_TIMEOUT_S)


# What a browser says when a navigation failed on the network (Chromium, Firefox, WebDriver
# BiDi).
NAVIGATION_FAILURES = ("net::", "NS_ERROR", "browsingContext.navigate")
CLASSIFIED_CHARS = 4 * ERROR_CHARS


def _classify(step: Step, exc: PlaywrightError) -> StepErrorKind:
    message = exc.message[:CLASSIFIED_CHARS]  # the head says what failed; a page's can be huge
    kind = step.kind
    if kind.runs_script:
        return StepErrorKind.SCRIPT_ERROR
    if kind.navigates and any(failure in message for failure in NAVIGATION_FAILURES):
        return StepErrorKind.NAVIGATION
    if "selector" in message.lower() or "Unexpected token" in message:
        return StepErrorKind.SELECTOR
    return StepErrorKind.BROWSER

"""The Playwright-backed engine shared by Chromium, Firefox and Camoufox.

An adapter supplies only how to launch a browser; this module owns the browsers, the sessions
(context + page) lent on them, step execution, crash detection and the kill escalation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import psutil
from playwright.async_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    async_playwright,
)
from playwright.async_api import (
    Error as PlaywrightError,
)
from playwright.async_api import (
    TimeoutError as PlaywrightTimeout,
)

from broker.cleanup import TaskSet, abandon, bounded
from broker.engines.base import (
    Availability,
    EngineCensus,
    LostCallback,
    LostCause,
    RecyclePolicy,
)
from broker.errors import FieldViolation, InvalidArgument, Unavailable
from broker.options import BrowserOptions, ContextOptions, EngineName, Isolation
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
Launcher = Callable[[Playwright], Awaitable[Browser]]
# Stops whatever script is running in a page, even one that never yields (engine-specific).
Interrupter = Callable[[], Awaitable[object]]

INTERRUPT_TIMEOUT_S = 0.25
# Builds the launcher of one dedicated browser from the lease's options (Camoufox: draws the
# fingerprint). Runs before the launch lock is taken, so slow preparation does not hold up others.
PrepareLauncher = Callable[[BrowserOptions | None, ContextOptions], Awaitable[Launcher]]

CLOSE_TIMEOUT_S = 5.0


class PlaywrightSession:
    """A context and its current page; with ISOLATION_BROWSER also a browser of its own."""

    def __init__(
        self,
        engine: PlaywrightEngine,
        browser: Browser,
        context: BrowserContext,
        page: Page,
        isolation: Isolation,
    ) -> None:
        self.engine_ref = engine
        self.engine: EngineName = engine.name
        self.isolation = isolation
        self.browser = browser
        self.context = context
        self.page = page
        self._lost_callback: LostCallback | None = None
        self.interrupter: Interrupter | None = None
        self._closing = False
        self._resetting = False  # the page is being replaced on purpose
        self._lost = False
        self.driver_lost = False  # Playwright's driver died: nothing here can be called any more
        self._watch_page(page)

    @property
    def alive(self) -> bool:
        if self._closing or self._lost or self.driver_lost:
            return False
        return self.browser.is_connected()

    @property
    def retiring(self) -> bool:
        return self.engine_ref.is_retiring(self.browser)

    def set_lost_callback(self, callback: LostCallback | None) -> None:
        self._lost_callback = callback

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
        try:
            await self.engine_ref.while_connected(
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
            outcome.error_message = _first_line(exc.message)
            self._check_alive()
        except _Unsupported as exc:
            outcome.ok = False
            outcome.error_kind = StepErrorKind.UNSUPPORTED
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
        match step.action:
            case Goto(url=url, wait_until=wait_until):
                response = await page.goto(url, wait_until=wait_until, timeout=ms)  # type: ignore[arg-type]
                out.http_status = response.status if response is not None else 0
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
                        value = await page.evaluate(expression, json.loads(arg_json))
                    else:
                        value = await page.evaluate(expression)
                out.json = json.dumps(value, default=str)
            case GetContent():
                async with asyncio.timeout(timeout_s):
                    out.text = await page.content()
            case GetText(selector=selector):
                out.text = await page.locator(selector).first.inner_text(timeout=ms)
            case GetAttribute(selector=selector, name=name):
                attribute = await page.locator(selector).first.get_attribute(name, timeout=ms)
                out.found = attribute is not None
                out.text = attribute or ""
            case Screenshot(full_page=full_page):
                out.data = await page.screenshot(full_page=full_page, timeout=ms, type="png")
            case Pdf():
                if not self.engine_ref.supports_pdf:
                    raise _Unsupported(f"pdf is not supported by {self.engine.value}")
                async with asyncio.timeout(timeout_s):
                    out.data = await page.pdf()

    async def reset_page(self) -> None:
        old = self.page
        # Closing the page aborts its pending navigations and running scripts in the browser.
        self._resetting = True
        try:
            await self.interrupt_scripts()
            # Bounded: Chromium can acknowledge a close without closing (a close racing a
            # navigation commit). The caller then ends the lease, which closes the context.
            await bounded(old.close(run_before_unload=False), CLOSE_TIMEOUT_S)
        finally:
            self._resetting = False
        self.page = await bounded(
            self.engine_ref.while_connected(
                self.browser, self.context.new_page(), "replacing a page"
            ),
            CLOSE_TIMEOUT_S,
        )
        self._watch_page(self.page)
        self.interrupter = await self.engine_ref.page_interrupter(self.context, self.page)

    async def interrupt_scripts(self) -> None:
        """Stop a script that holds the page's main thread, so closing it need not wait for a hang
        timeout (Chromium waits ~0.5 s for a busy renderer before it gives up on it)."""
        if self.interrupter is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(INTERRUPT_TIMEOUT_S):
                await self.interrupter()

    async def close(self) -> None:
        if self._closing and self not in self.engine_ref.sessions:
            return
        self._closing = True
        try:
            await self.engine_ref.close_session(self)
        finally:
            self.engine_ref.sessions.discard(self)
            self.engine_ref.close_if_drained(self.browser)


class _Unsupported(Exception):
    pass


def _first_line(message: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return "browser error"
    # WebDriver BiDi says "Protocol error (browsingContext.navigate): unknown error" first and
    # the cause on the next line ("Message: Error: NS_ERROR_UNKNOWN_HOST at http://...").
    if len(lines) > 1 and "Protocol error" in lines[0] and lines[1].startswith("Message:"):
        return f"{lines[0]}: {lines[1].removeprefix('Message:').strip()}"
    return lines[0]


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


def context_kwargs(options: ContextOptions) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
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
    if options.ignore_https_errors:
        kwargs["ignore_https_errors"] = True
    if options.java_script_disabled:
        kwargs["java_script_enabled"] = False
    return kwargs


_DEFAULT_CONTEXT = ContextOptions()


class PlaywrightEngine:
    """Browsers of one kind: a shared browser for context isolation, and dedicated ones."""

    supports_pdf = False

    def __init__(
        self,
        name: EngineName,
        launcher: Launcher,
        executable: str,
        availability: Availability,
        launch_timeout_s: float = 30.0,
        prepare_launcher: PrepareLauncher | None = None,
        unsupported_context: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self._launcher = launcher
        self._executable = executable
        self._availability = availability
        self._launch_timeout_s = launch_timeout_s
        self._prepare_launcher = prepare_launcher
        # ContextOptions field -> why this engine cannot honour it (InvalidArgument when set).
        self.unsupported_context = dict(unsupported_context or {})
        self._playwright: Playwright | None = None
        self._playwright_start: asyncio.Future[Playwright] | None = None
        self._drivers_lost = 0  # a call that fails across a change of this failed with its driver
        self._shared: Browser | None = None
        self._launch_lock = asyncio.Lock()
        self._shared_launch_lock = asyncio.Lock()
        self._browser_pids: dict[Browser, int] = {}
        self.sessions: set[PlaywrightSession] = set()
        self._closed = False
        self.recycling = RecyclePolicy()
        # Recycling of shared browsers: sessions opened in each, sessions being opened in each
        # (not yet in `sessions`), and the retired ones waiting for their last session to close.
        self._opened_in: dict[Browser, int] = {}
        self._opening_in: dict[Browser, int] = {}
        self._retiring: set[Browser] = set()
        self._recycled = 0
        self._browser_closers = TaskSet()
        # Resolved when a browser disconnects (see while_connected).
        self._gone: dict[Browser, asyncio.Future[None]] = {}

    # ------------------------------------------------------------- lifecycle

    def availability(self) -> Availability:
        return self._availability

    async def _ensure_playwright(self) -> Playwright:
        # Shielded: a caller cancelled mid-start must not leave a driver that close() cannot see.
        if self._playwright_start is None:
            quiet_aborted_calls(asyncio.get_running_loop())
            self._playwright_start = asyncio.ensure_future(async_playwright().start())
            self._playwright_start.add_done_callback(self._watch_driver)
        self._playwright = await asyncio.shield(self._playwright_start)
        return self._playwright

    @property
    def driver_pid(self) -> int | None:
        """The PID of Playwright's driver process, while one runs."""
        transport = _driver_transport(self._playwright)
        proc = getattr(transport, "_proc", None)
        pid = getattr(proc, "pid", None)
        return pid if isinstance(pid, int) else None

    def _watch_driver(self, start: asyncio.Future[Playwright]) -> None:
        if start.cancelled() or start.exception() is not None:
            self._playwright_start = None  # the next launch tries again
            return
        # Playwright has no public event for its driver dying: every later call just fails with
        # "Connection closed while reading from the driver". Its transport's error future is the
        # one signal, so watch it.
        died = getattr(_driver_transport(start.result()), "on_error_future", None)
        if isinstance(died, asyncio.Future):
            died.add_done_callback(lambda _: self._on_driver_lost(start))

    def _on_driver_lost(self, start: asyncio.Future[Playwright]) -> None:
        """Like a crash of every browser at once: end their sessions, kill what is left of the
        browsers (a browser on a WebSocket does not notice), and start a new driver on demand."""
        if self._closed or start is not self._playwright_start:
            return
        log.error(
            "playwright driver died; its browsers are killed", extra={"engine": self.name.value}
        )
        self._drivers_lost += 1
        self._playwright_start = None
        self._playwright = None
        for browser in list(self._browser_pids):
            self._kill(browser)
        for gone in self._gone.values():
            _resolve(gone)
        self._gone.clear()
        self._shared = None
        self._opened_in.clear()
        self._opening_in.clear()
        self._retiring.clear()
        lost = list(self.sessions)
        self.sessions.clear()
        for session in lost:
            session.driver_lost = True
            session.mark_lost(LostCause.ENGINE_CRASHED)

    async def _launch(self, launcher: Launcher | None = None) -> Browser:
        """Launch one browser and learn its PID (launches are serialized, so the new PID is it)."""
        if self._closed:
            raise Unavailable(f"{self.name.value} engine is closed")
        async with self._launch_lock:
            playwright = await self._ensure_playwright()
            drivers_lost = self._drivers_lost
            before = set(self._top_level_pids())
            try:
                browser = await bounded(
                    (launcher or self._launcher)(playwright), self._launch_timeout_s
                )
            except Exception as exc:
                if isinstance(exc, (PlaywrightError, TimeoutError)) or (
                    self._drivers_lost != drivers_lost
                ):
                    raise Unavailable(f"{self.name.value} failed to launch: {exc}") from exc
                raise
            new_pids = [pid for pid in self._top_level_pids() if pid not in before]
            if new_pids:
                self._browser_pids[browser] = new_pids[0]
            self._gone[browser] = asyncio.get_running_loop().create_future()
            browser.on("disconnected", self._on_disconnected)
            log.info("browser launched", extra={"engine": self.name.value, "pids": new_pids})
            return browser

    async def _shared_browser(self) -> Browser:
        if self._shared is not None and self._shared.is_connected():
            return self._shared
        async with self._shared_launch_lock:
            if self._shared is None or not self._shared.is_connected():
                self._shared = await self._launch()
            return self._shared

    def _on_disconnected(self, browser: Browser) -> None:
        _resolve(self._gone.pop(browser, None))
        self._browser_pids.pop(browser, None)
        self._opened_in.pop(browser, None)
        self._retiring.discard(browser)
        if browser is self._shared:
            self._shared = None  # relaunched on the next demand
        for session in list(self.sessions):
            if session.browser is browser:
                session.mark_lost(LostCause.ENGINE_CRASHED)

    async def open_session(
        self,
        isolation: Isolation,
        options: ContextOptions,
        browser_options: BrowserOptions | None = None,
    ) -> PlaywrightSession:
        self._check_supported(isolation, options, browser_options)
        browser: Browser | None = None
        context: BrowserContext | None = None
        shared: Browser | None = None
        drivers_lost = self._drivers_lost
        try:
            if isolation is Isolation.BROWSER:
                browser = await self._launch(await self._prepare(browser_options, options))
            else:
                browser = shared = await self._shared_browser()
                self._opening_in[shared] = self._opening_in.get(shared, 0) + 1
            context = await self.while_connected(
                browser, browser.new_context(**context_kwargs(options))
            )
            page = await self.while_connected(browser, context.new_page())
            # The renderer is up: the first step pays no start-up.
            await self.while_connected(browser, page.evaluate("1"))
            interrupter = await self.page_interrupter(context, page)
            session = PlaywrightSession(self, browser, context, page, isolation)
            session.interrupter = interrupter
            self.sessions.add(session)
            if shared is not None:
                self._count_session(shared)
            return session
        except BaseException as exc:
            # Half-built: close what exists, even when cancelled, then let the error through.
            await asyncio.shield(
                self._discard(browser if isolation is Isolation.BROWSER else None, context)
            )
            # The browser (or Playwright's driver, which fails calls with a plain Exception) died
            # while the session was being opened.
            if isinstance(exc, PlaywrightError) or (
                isinstance(exc, Exception) and self._drivers_lost != drivers_lost
            ):
                message = exc.message if isinstance(exc, PlaywrightError) else str(exc)
                raise Unavailable(
                    f"{self.name.value} could not open a session: {_first_line(message)}"
                ) from exc
            raise
        finally:
            if shared is not None:
                # (Cleared meanwhile if the driver died.)
                opening = self._opening_in.pop(shared, 0) - 1
                if opening > 0:
                    self._opening_in[shared] = opening
                self.close_if_drained(shared)

    async def while_connected(
        self, browser: Browser, work: Awaitable[T], doing: str = "opening a session"
    ) -> T:
        """Await a Playwright call on `browser`, unless the browser goes away first.

        Playwright can leave a call that was in flight when its browser was killed (new_page, for
        one) unanswered for ever, and its cancellation then waits for an answer too. So the call
        is abandoned, not awaited, once the browser is gone.
        """
        task = asyncio.ensure_future(work)
        gone = self._gone.get(browser)
        if gone is None:  # gone already, or not launched by this engine
            if browser.is_connected():
                return await task
            gone = asyncio.get_running_loop().create_future()
            gone.set_result(None)
        either: list[asyncio.Future[Any]] = [task, gone]
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            abandon(task)
            raise
        if task.done():
            return task.result()
        abandon(task)
        raise Unavailable(f"{self.name.value} browser went away while {doing}")

    def _check_supported(
        self, isolation: Isolation, options: ContextOptions, browser_options: BrowserOptions | None
    ) -> None:
        """Refuse, before anything is launched, what this engine would silently ignore."""
        violations = [
            FieldViolation(f"context.{name}", reason)
            for name, reason in self.unsupported_context.items()
            if getattr(options, name) != getattr(_DEFAULT_CONTEXT, name)
        ]
        if browser_options is not None:
            if self._prepare_launcher is None:
                violations.append(
                    FieldViolation("camoufox", f"{self.name.value} takes no camoufox options")
                )
            elif isolation is not Isolation.BROWSER:
                violations.append(
                    FieldViolation("isolation", "browser options need ISOLATION_BROWSER")
                )
        if violations:
            raise InvalidArgument(violations)

    async def _prepare(
        self, browser_options: BrowserOptions | None, options: ContextOptions
    ) -> Launcher | None:
        """The launcher of a dedicated browser; None means the engine's plain launcher."""
        if self._prepare_launcher is None:
            return None
        try:
            async with asyncio.timeout(self._launch_timeout_s):
                return await self._prepare_launcher(browser_options, options)
        except TimeoutError as exc:
            raise Unavailable(
                f"{self.name.value} launch preparation took over {self._launch_timeout_s:g}s"
            ) from exc

    async def _discard(self, dedicated: Browser | None, context: BrowserContext | None) -> None:
        async def close() -> None:
            if context is not None:
                await context.close()
            if dedicated is not None:
                await dedicated.close()

        try:
            await bounded(close(), CLOSE_TIMEOUT_S)
        except Exception:
            if dedicated is not None:
                self._kill(dedicated)

    async def close_session(self, session: PlaywrightSession) -> None:
        """Close context, then a dedicated browser; kill the process if a graceful close fails."""
        if session.driver_lost:
            return  # its browser was killed with the driver's loss; nothing can be called
        dedicated = session.browser if session.isolation is Isolation.BROWSER else None

        async def close() -> None:
            await session.context.close()
            if dedicated is not None:
                await dedicated.close()

        try:
            await session.interrupt_scripts()
            await bounded(close(), CLOSE_TIMEOUT_S)
        except (PlaywrightError, TimeoutError) as exc:
            if not session.browser.is_connected():
                return  # already gone: nothing left to close
            log.warning("graceful close failed, escalating", extra={"error": str(exc)})
            if dedicated is not None:
                self._kill(dedicated)
            else:
                with contextlib.suppress(PlaywrightError, TimeoutError):
                    await bounded(session.page.close(), CLOSE_TIMEOUT_S)

    # ------------------------------------------------------------- recycling

    def is_retiring(self, browser: Browser) -> bool:
        return browser in self._retiring

    def _count_session(self, browser: Browser) -> None:
        opened = self._opened_in[browser] = self._opened_in.get(browser, 0) + 1
        limit = self.recycling.after_sessions
        if limit and opened >= limit:
            self._retire(browser, f"{opened} sessions opened in it (limit {limit})")

    def _retire(self, browser: Browser, why: str) -> None:
        """New sessions go to a fresh shared browser; this one closes when its last session has."""
        if browser in self._retiring or not browser.is_connected():
            return
        self._retiring.add(browser)
        if browser is self._shared:
            self._shared = None
        log.info(
            "browser retiring",
            extra={"engine": self.name.value, "pid": self._browser_pids.get(browser), "why": why},
        )
        self.close_if_drained(browser)

    def close_if_drained(self, browser: Browser) -> None:
        if browser not in self._retiring or self._opening_in.get(browser):
            return
        if any(session.browser is browser for session in self.sessions):
            return
        self._retiring.discard(browser)
        self._recycled += 1
        self._browser_closers.spawn(self._close_browser(browser))

    async def _close_browser(self, browser: Browser) -> None:
        try:
            await bounded(browser.close(), CLOSE_TIMEOUT_S)
        except (PlaywrightError, TimeoutError):
            self._kill(browser)
        log.info("browser recycled", extra={"engine": self.name.value})

    async def check_memory(self) -> None:
        browser = self._shared
        if not self.recycling.above_mb or browser is None:
            return
        pid = self._browser_pids.get(browser)
        if pid is None:
            return
        used_mb = await asyncio.to_thread(process_tree_pss_mb, pid)
        if used_mb > self.recycling.above_mb and browser is self._shared:
            self._retire(browser, f"{used_mb:.0f} MB PSS (bound {self.recycling.above_mb:g} MB)")

    def _kill(self, browser: Browser) -> None:
        pid = self._browser_pids.pop(browser, None)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for session in list(self.sessions):
            await session.close()
        await self._browser_closers.wait()
        browsers = [b for b in (self._shared, *self._browser_pids) if b is not None]
        for browser in set(browsers):
            try:
                await bounded(browser.close(), CLOSE_TIMEOUT_S)
            except (PlaywrightError, TimeoutError):
                self._kill(browser)
        self._shared = None
        if self._playwright_start is not None:
            with contextlib.suppress(Exception):
                playwright = await self._playwright_start
                await bounded(playwright.stop(), CLOSE_TIMEOUT_S)
            self._playwright = None
            self._playwright_start = None

    async def page_interrupter(self, context: BrowserContext, page: Page) -> Interrupter | None:
        """Prepared while the page is idle: a busy page cannot be attached to later."""
        return None

    # ----------------------------------------------------------------- views

    def live_sessions(self) -> list[PlaywrightSession]:
        return [s for s in self.sessions if s.alive]

    def census(self) -> EngineCensus:
        browsers = {self._shared} if self._shared is not None else set()
        browsers |= {s.browser for s in self.sessions}
        connected = [b for b in browsers if b.is_connected()]
        contexts = [c for b in connected for c in b.contexts]
        pages = sum(len(c.pages) for c in contexts)
        return EngineCensus(
            browsers=len(self._top_level_pids()),
            contexts=len(contexts),
            pages=pages,
            browser_pids=self._top_level_pids(),
            retiring=len(self._retiring),
            recycled=self._recycled,
        )

    def _top_level_pids(self) -> list[int]:
        """This engine's browser processes among our descendants (not their helper processes)."""
        return browser_processes(self._executable, self.driver_pid)


_QUIETED_LOOPS: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def quiet_aborted_calls(loop: asyncio.AbstractEventLoop) -> None:
    """Keep Playwright's aborted calls out of the error log.

    When a task awaiting a Playwright call is cancelled twice in quick succession (a Run's
    deadline, then its lease's release), Playwright's abort handshake is interrupted and the
    call's future is dropped holding "Task was cancelled". asyncio would log that at error level
    as "Future exception was never retrieved"; it is the cancellation working, so it is logged
    at debug level instead. Everything else goes to the handler that was there before.
    """
    if loop in _QUIETED_LOOPS:
        return
    _QUIETED_LOOPS.add(loop)
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if (
            isinstance(error, PlaywrightError)
            and error.message.startswith("Task was cancelled")
            and str(context.get("message", "")).startswith("Future exception was never retrieved")
        ):
            log.debug("an aborted browser call was dropped: %s", _first_line(error.message))
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def _resolve(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


def _driver_transport(playwright: Playwright | None) -> object:
    connection = getattr(getattr(playwright, "_impl_obj", None), "_connection", None)
    return getattr(connection, "_transport", None)


def process_tree_pss_mb(pid: int) -> float:
    """Proportional set size of a process and all its descendants, in MiB (0 if it is gone)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_full_info().pss
    return total / (1024 * 1024)


def browser_processes(executable: str, parent: int | None) -> list[int]:
    """Browser (not helper) processes of `executable` below `parent`: the engine's own driver, so
    another engine or broker in the same process tree is never counted, or killed."""
    pids: list[int] = []
    if not executable or parent is None:
        return pids  # an unavailable engine (realpath("") would be the working directory)
    real = os.path.realpath(executable)
    try:
        children = psutil.Process(parent).children(recursive=True)
    except psutil.Error:
        return pids
    parents: dict[int, int] = {}
    for proc in children:
        try:
            cmdline = proc.cmdline()
            ppid = proc.ppid()
        except psutil.Error:
            continue
        if not cmdline or any(a.startswith("--type=") or a == "-contentproc" for a in cmdline):
            continue
        if os.path.realpath(cmdline[0]) == real or os.path.basename(cmdline[0]) == os.path.basename(
            real
        ):
            pids.append(proc.pid)
            parents[proc.pid] = ppid
    # A browser's child caught between fork and exec (its crash handler, say) still shows the
    # browser's command line; it is not a browser of its own.
    return [pid for pid in pids if parents[pid] not in parents]

"""The Playwright-backed engine shared by Chromium, Firefox and Camoufox: launching browsers,
one record per browser, recycling, driver loss, the kill escalation. Sessions are in
`playwright_session`, driver and process plumbing in `playwright_driver`, each tenant's shared
browser in `playwright.shared`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from playwright.async_api import Browser, BrowserContext, Page, Playwright
from playwright.async_api import Error as PlaywrightError

from broker.common.cleanup import TaskSet, bounded
from broker.egress.proxy import EgressGateway, EgressRoute
from broker.engines.base import (
    Availability,
    LostCause,
    RecyclePolicy,
    ResultLimits,
    check_supported,
)
from broker.engines.playwright.census import EngineViews
from broker.engines.playwright.context import context_kwargs, open_first_page, shape_page
from broker.engines.playwright.driver import (
    BrowserProcesses,
    BrowserRecord,
    Driver,
    call_while_connected,
    first_line,
    kill_browser,
    process_tree_pss_mb,
    resolve,
)
from broker.engines.playwright.session import CLOSE_TIMEOUT_S, Interrupter, PlaywrightSession
from broker.engines.playwright.shared import SharedBrowsers
from broker.errors import InvalidArgument, Unavailable
from broker.model.attach import AttachOptions
from broker.model.options import BrowserOptions, ContextOptions, EngineName, Isolation

log = logging.getLogger("broker.engines")

T = TypeVar("T")
Launcher = Callable[[Playwright], Awaitable[Browser]]
# Builds the launcher of one dedicated browser from the lease's options (Camoufox: draws the
# fingerprint). Runs before the launch lock is taken, so slow preparation does not hold up others.
PrepareLauncher = Callable[[BrowserOptions | None, ContextOptions], Awaitable[Launcher]]


class PlaywrightEngine(EngineViews):
    """Browsers of one kind: a shared browser per tenant for context isolation (see
    `playwright.shared`), and dedicated ones (an attachable one: `attachable.py`)."""

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
        # Set by the broker before the first session: the egress gateway (None: no policy) and
        # the bounds on step results.
        self._egress: EgressGateway | None = None
        self.result_limits = ResultLimits()
        self._launcher = launcher
        self._executable = executable
        self._availability = availability
        self._launch_timeout_s = launch_timeout_s
        self._prepare_launcher = prepare_launcher
        # ContextOptions field -> why this engine cannot honour it (InvalidArgument when set).
        self.unsupported_context = dict(unsupported_context or {})
        self.recycling = RecyclePolicy()
        self.sessions: set[PlaywrightSession] = set()
        self._unclosed: set[PlaywrightSession] = set()  # released, but their context lives on
        self._driver = Driver(self._on_driver_lost)
        self._processes = BrowserProcesses(executable, lambda: self._driver.pid)
        self._browsers: dict[Browser, BrowserRecord] = {}
        self._shared = SharedBrowsers(self._in_use, self._close_idle, self.name.value)
        self._launch_lock = asyncio.Lock()
        self._recycled = 0
        self._browser_closers = TaskSet()
        self._closed = False

    # ------------------------------------------------------------- lifecycle

    def use_egress(self, gateway: EgressGateway | None) -> None:
        self._egress = gateway

    def availability(self) -> Availability:
        return self._availability

    @property
    def driver_pid(self) -> int | None:  # while a driver runs
        return self._driver.pid

    def _on_driver_lost(self) -> None:
        """Like a crash of every browser at once: end their sessions, kill what is left of the
        browsers (a browser on a WebSocket does not notice); the next use starts a new driver."""
        if self._closed:
            return
        log.error(
            "playwright driver died; its browsers are killed", extra={"engine": self.name.value}
        )
        records = list(self._browsers.values())
        self._browsers.clear()
        self._shared.clear()
        for record in records:
            kill_browser(record)
            resolve(record.gone)
        lost = list(self.sessions)
        self.sessions.clear()
        for session in lost:
            session.driver_lost = True
            session.mark_lost(LostCause.ENGINE_CRASHED)

    async def _launch(self, launcher: Launcher | None = None) -> Browser:
        """Launch one browser. A caller cancelled meanwhile does not cancel the launch: Playwright
        can finish it in its driver all the same, and that browser would be nobody's (a process
        alive until the driver stops). The launch goes on, and its browser is closed."""
        if self._closed:
            raise Unavailable(f"{self.name.value} engine is closed")
        launching = asyncio.ensure_future(self._launch_serialized(launcher))
        try:
            return await asyncio.shield(launching)
        except asyncio.CancelledError:
            self._browser_closers.spawn(self._close_launched(launching))
            raise

    async def _close_launched(self, launching: asyncio.Future[Browser]) -> None:
        with contextlib.suppress(Exception):  # a failed launch left nothing to close
            await self._close_browser(await launching)

    async def _launch_serialized(self, launcher: Launcher | None) -> Browser:
        """Launch one browser and learn its PID (launches are serialized, so the new PID is it)."""
        async with self._launch_lock:
            playwright = await self._driver.ensure(self._launch_timeout_s)
            drivers_lost = self._driver.generation
            before = set(self._processes.walk())
            try:
                browser = await bounded(
                    (launcher or self._launcher)(playwright), self._launch_timeout_s
                )
            except Exception as exc:
                if isinstance(exc, (PlaywrightError, TimeoutError)) or (
                    self._driver.generation != drivers_lost
                ):
                    # The launch log holds command lines and paths: for the operator's log only.
                    log.error("browser launch failed: %s", exc, extra={"engine": self.name.value})
                    raise Unavailable(
                        f"{self.name.value} failed to launch (the broker's log has the cause)"
                    ) from exc
                raise
            new_pids = [pid for pid in self._processes.walk() if pid not in before]
            self._browsers[browser] = BrowserRecord(browser, new_pids[0] if new_pids else None)
            browser.on("disconnected", self._on_disconnected)
            log.info("browser launched", extra={"engine": self.name.value, "pids": new_pids})
            return browser

    def _on_disconnected(self, browser: Browser) -> None:
        record = self._browsers.pop(browser, None)
        if record is not None:
            resolve(record.gone)
            self._processes.forget(record.pid)
        self._shared.unshare(browser)  # relaunched on the next demand
        for session in list(self.sessions):
            if session.browser is browser:
                session.mark_lost(LostCause.ENGINE_CRASHED)

    # -------------------------------------------------------------- sessions

    async def open_session(
        self,
        isolation: Isolation,
        options: ContextOptions,
        browser_options: BrowserOptions | None = None,
        *,
        tenant: str = "",
        attach: AttachOptions | None = None,
    ) -> PlaywrightSession:
        if attach is not None:  # (an engine that serves attached clients overrides this)
            raise InvalidArgument.single("attach", f"{self.name.value} serves no attached clients")
        check_supported(
            self.name,
            self.unsupported_context,
            self._prepare_launcher is not None,
            isolation,
            options,
            browser_options,
        )
        browser: Browser | None = None
        context: BrowserContext | None = None
        shared: BrowserRecord | None = None
        route: EgressRoute | None = None
        drivers_lost = self._driver.generation
        try:
            if self._egress is not None and options.proxy is None:
                route = await self._egress.open_route()
            if isolation is Isolation.BROWSER:
                browser = await self._launch(await self._prepare(browser_options, options, route))
            else:
                browser = await self._shared.get_or_launch(tenant, self._launch)
                shared = self._browsers.get(browser)
                if shared is not None:
                    shared.opening += 1
            context = await self.while_connected(
                browser, browser.new_context(**context_kwargs(options, route))
            )
            page = await self.while_connected(browser, open_first_page(context, options))
            # The renderer is up: the first step pays no start-up.
            await self.while_connected(browser, page.evaluate("1"))
            interrupter = await self.page_interrupter(context, page)
            session = PlaywrightSession(
                self, browser, context, page, isolation, route, self.result_limits, options
            )
            session.set_interrupter(page, interrupter)
            await self.while_connected(browser, shape_page(page, options))
            self.sessions.add(session)
            if shared is not None:
                self._count_session(shared)
            if not browser.is_connected():  # its disconnect came before the session was known
                session.mark_lost(LostCause.ENGINE_CRASHED)
            return session
        except BaseException as exc:
            # Half-built: close what exists, even when cancelled, then let the error through.
            await asyncio.shield(
                self._discard(browser if isolation is Isolation.BROWSER else None, context, route)
            )
            # The browser (or Playwright's driver, which fails calls with a plain Exception) died
            # while the session was being opened.
            if isinstance(exc, PlaywrightError) or (
                isinstance(exc, Exception) and self._driver.generation != drivers_lost
            ):
                message = exc.message if isinstance(exc, PlaywrightError) else str(exc)
                raise Unavailable(
                    f"{self.name.value} could not open a session: {first_line(message)}"
                ) from exc
            raise
        finally:
            if shared is not None:
                shared.opening -= 1
                self._drained(shared)

    async def while_connected(
        self, browser: Browser, work: Awaitable[T], doing: str = "opening a session"
    ) -> T:
        """Await a Playwright call on `browser`, abandoning it if the browser goes away first."""
        gone = record.gone if (record := self._browsers.get(browser)) else None
        return await call_while_connected(browser, gone, work, f"{self.name} browser", doing)

    async def _prepare(
        self,
        browser_options: BrowserOptions | None,
        options: ContextOptions,
        route: EgressRoute | None = None,
    ) -> Launcher | None:
        """The launcher of a dedicated browser (behind `route`); None: the plain launcher."""
        if self._prepare_launcher is None:
            return None
        try:
            async with asyncio.timeout(self._launch_timeout_s):
                return await self._prepare_launcher(browser_options, options)
        except TimeoutError as exc:
            raise Unavailable(
                f"{self.name.value} launch preparation took over {self._launch_timeout_s:g}s"
            ) from exc

    async def _discard(
        self, dedicated: Browser | None, context: BrowserContext | None, route: EgressRoute | None
    ) -> None:
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
        finally:
            if route is not None and self._egress is not None:
                await self._egress.close_route(route)

    async def close_session(self, session: PlaywrightSession) -> None:
        """Close context, then a dedicated browser; kill the process if a graceful close fails.

        A shared browser's context that would not close stays tracked (`unclosed` in the
        census) and is tried again by `reclose`, until it is gone or its browser is.
        """
        if session not in self.sessions:
            return  # closed already, or its browser was killed with the driver
        gone = False
        try:
            gone = await self._close_session(session)
        finally:
            if gone or not session.browser.is_connected():
                self._untrack(session)
                self._unclosed.discard(session)
            else:
                self._unclosed.add(session)

    def _untrack(self, session: PlaywrightSession) -> None:
        self.sessions.discard(session)
        if session.egress is not None and self._egress is not None:
            self._browser_closers.spawn(self._egress.close_route(session.egress))
        if (record := self._browsers.get(session.browser)) is not None:
            self._drained(record)

    async def reclose(self) -> int:
        """Try again to close the contexts that would not close; how many are still open."""
        for session in list(self._unclosed):
            await self.close_session(session)
        return len(self._unclosed)

    async def _close_session(self, session: PlaywrightSession) -> bool:
        """Whether the session's browser side is gone (closed, or its browser is)."""
        if session.driver_lost:
            return True  # its browser was killed with the driver's loss; nothing can be called
        dedicated = session.browser if session.isolation is Isolation.BROWSER else None

        async def close() -> None:
            await session.context.close()
            if dedicated is not None:
                await dedicated.close()

        generation = self._driver.generation
        try:
            await session.interrupt_scripts()
            await bounded(close(), CLOSE_TIMEOUT_S)
            return True
        except Exception as exc:
            driver_died = session.driver_lost or self._driver.generation != generation
            if driver_died or not session.browser.is_connected():
                return True  # the driver or the browser went away meanwhile: nothing to close
            if not isinstance(exc, (PlaywrightError, TimeoutError)):
                raise
            log.warning("graceful close failed, escalating", extra={"error": str(exc)})
            if dedicated is not None:
                self._kill(dedicated)
                return True
            with contextlib.suppress(PlaywrightError, TimeoutError):
                await bounded(session.page.close(), CLOSE_TIMEOUT_S)
            return session.context not in session.browser.contexts

    async def page_interrupter(self, context: BrowserContext, page: Page) -> Interrupter | None:
        """Prepared while the page is idle: a busy page cannot be attached to later."""
        return None

    # ------------------------------------------------------------- recycling

    def is_retiring(self, browser: Browser) -> bool:
        record = self._browsers.get(browser)
        return record is not None and record.retiring

    def _count_session(self, record: BrowserRecord) -> None:
        record.opened += 1
        limit = self.recycling.after_sessions
        if limit and record.opened >= limit:
            self._retire(record, f"{record.opened} sessions opened in it (limit {limit})")

    def _retire(self, record: BrowserRecord, why: str) -> None:
        """New sessions go to a fresh shared browser; this one closes when its last session has."""
        if record.retiring or not record.browser.is_connected():
            return
        record.retiring = True
        self._shared.unshare(record.browser)
        log.info(
            "browser retiring", extra={"engine": self.name.value, "pid": record.pid, "why": why}
        )
        self._close_if_drained(record)

    def _in_use(self, browser: Browser) -> bool:
        """Has sessions or one opening; a browser no longer tracked is gone (nothing to close)."""
        record = self._browsers.get(browser)
        busy = record is None or record.opening > 0
        return busy or any(session.browser is browser for session in self.sessions)

    def _drained(self, record: BrowserRecord) -> None:
        """A session of the browser ended or failed to open: a retiring browser left empty
        closes; a tenant's shared browser left empty starts its idle time."""
        self._close_if_drained(record)
        if not (record.retiring or self._closed):
            self._shared.idle(record.browser)

    def _close_idle(self, browser: Browser) -> None:
        self._browser_closers.spawn(self._close_browser(browser))

    def _close_if_drained(self, record: BrowserRecord) -> None:
        tracked = self._browsers.get(record.browser) is record  # (if not, the browser is gone)
        if not record.retiring or not tracked or self._in_use(record.browser):
            return
        record.retiring = False
        self._recycled += 1
        self._browser_closers.spawn(self._close_browser(record.browser))
        log.info("browser recycled", extra={"engine": self.name.value})

    async def _close_browser(self, browser: Browser) -> None:
        try:
            await bounded(browser.close(), CLOSE_TIMEOUT_S)
        except (PlaywrightError, TimeoutError):
            self._kill(browser)

    async def check_memory(self) -> None:
        """Retire every tenant's shared browser that is above the bound."""
        if not (bound := self.recycling.above_mb):
            return
        for browser in self._shared.browsers():
            record = self._browsers.get(browser)
            if record is not None and record.pid is not None:
                used_mb = await asyncio.to_thread(process_tree_pss_mb, record.pid)
                if used_mb > bound and browser in self._shared:
                    self._retire(record, f"{used_mb:.0f} MB PSS (bound {bound:g} MB)")

    def _kill(self, browser: Browser) -> None:
        record = self._browsers.get(browser)
        if record is not None:
            kill_browser(record)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._shared.clear()
        for session in list(self.sessions):
            await session.close()
        await self._browser_closers.wait()
        for browser in {record.browser for record in self._browsers.values()}:
            try:
                await bounded(browser.close(), CLOSE_TIMEOUT_S)
            except (PlaywrightError, TimeoutError):
                self._kill(browser)
        await self._driver.stop()

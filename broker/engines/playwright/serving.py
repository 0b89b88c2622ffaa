"""A Playwright engine that can also serve a lease's browser over Playwright's own protocol
(`served.py`): Chromium, Firefox and Camoufox."""

from __future__ import annotations

import contextvars

from playwright.async_api import Browser, Playwright

from broker.attach.playwright_hub import PlaywrightHub
from broker.egress.proxy import EgressRoute
from broker.engines.base import Session
from broker.engines.playwright.engine import Launcher, PlaywrightEngine
from broker.engines.playwright.served import ServedBrowsers
from broker.engines.playwright.session import PlaywrightSession
from broker.errors import InvalidArgument
from broker.model.attach import AttachOptions, AttachProtocol
from broker.model.options import BrowserOptions, ContextOptions, Isolation

_SERVING: contextvars.ContextVar[bool] = contextvars.ContextVar("broker_serving", default=False)


class ServingEngine(PlaywrightEngine):
    served: ServedBrowsers | None = None

    def serve_playwright(self, served: ServedBrowsers) -> None:
        served.processes = self._processes
        served.launch_timeout_s = self._launch_timeout_s
        self.served = served

    def served_hub(self, session: Session) -> PlaywrightHub | None:
        """The hub of a session's browser served over Playwright's protocol (None: not one)."""
        if self.served is None or not isinstance(session, PlaywrightSession):
            return None
        return self.served.hub_of(session.browser)

    async def open_session(
        self,
        isolation: Isolation,
        options: ContextOptions,
        browser_options: BrowserOptions | None = None,
        *,
        tenant: str = "",
        attach: AttachOptions | None = None,
    ) -> PlaywrightSession:
        if attach is None or attach.protocol is not AttachProtocol.PLAYWRIGHT:
            return await super().open_session(
                isolation, options, browser_options, tenant=tenant, attach=attach
            )
        if self.served is None:
            raise InvalidArgument.single(
                "attach.protocol", f"{self.name.value} serves no Playwright-protocol clients"
            )
        if isolation is not Isolation.BROWSER:
            raise InvalidArgument.single("isolation", "an attachable lease needs its own browser")
        serving = _SERVING.set(True)
        try:
            return await super().open_session(isolation, options, browser_options, tenant=tenant)
        finally:
            _SERVING.reset(serving)

    async def _prepare(
        self,
        browser_options: BrowserOptions | None,
        options: ContextOptions,
        route: EgressRoute | None = None,
    ) -> Launcher | None:
        served = self.served
        if _SERVING.get() and served is not None:
            return await self._serve(served, browser_options, options, route)
        return await super()._prepare(browser_options, options, route)

    async def _serve(
        self,
        served: ServedBrowsers,
        browser_options: BrowserOptions | None,
        options: ContextOptions,
        route: EgressRoute | None,
    ) -> Launcher:
        """The launcher of one served browser (an engine whose every browser is launched from
        options of its own, Camoufox's, overrides this)."""

        async def launch(playwright: Playwright) -> Browser:
            return await served.launch(playwright, route)

        return launch

    async def close(self) -> None:
        await super().close()
        if self.served is not None:
            await self.served.stopped()

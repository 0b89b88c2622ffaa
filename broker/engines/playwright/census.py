"""What a Playwright engine has open, from the browser's side: for status, metrics and the
reconciler. Browser processes are counted from walks of the process table (below the engine's
driver, and below the broker itself for the browsers it launched on a pipe of its own)."""

from __future__ import annotations

from playwright.async_api import Browser

from broker.engines.base import EngineCensus
from broker.engines.playwright.driver import BrowserProcesses, BrowserRecord
from broker.engines.playwright.session import PlaywrightSession
from broker.engines.playwright.shared import SharedBrowsers


class EngineViews:
    """Mixed into PlaywrightEngine, whose state it reads."""

    sessions: set[PlaywrightSession]
    _unclosed: set[PlaywrightSession]
    _processes: BrowserProcesses
    _browsers: dict[Browser, BrowserRecord]
    _shared: SharedBrowsers
    _recycled: int

    def live_sessions(self) -> list[PlaywrightSession]:
        return [s for s in self.sessions if s.alive]

    def census(self) -> EngineCensus:
        return self._census(self._processes.walk())

    async def census_async(self, max_age_s: float = 0.5) -> EngineCensus:
        return self._census(await self._processes.recent(max_age_s))

    def cached_census(self) -> EngineCensus:
        return self._census(self._processes.pids)

    def _census(self, pids: list[int]) -> EngineCensus:
        browsers = set(self._shared.browsers())
        browsers |= {s.browser for s in self.sessions}
        connected = [b for b in browsers if b.is_connected()]
        contexts = [c for b in connected for c in b.contexts]
        pages = sum(len(c.pages) for c in contexts)
        return EngineCensus(
            browsers=len(pids),
            contexts=len(contexts),
            pages=pages,
            browser_pids=pids,
            retiring=sum(1 for record in self._browsers.values() if record.retiring),
            recycled=self._recycled,
            unclosed=len(self._unclosed),
        )

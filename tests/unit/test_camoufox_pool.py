"""A warm pool of dedicated Camoufox browsers draws a fresh fingerprint for each browser, as a
cold lease's browser gets one. Camoufox's browser is not launched: `camoufox.launch_options` (where
the fingerprint is drawn) and `AsyncNewBrowser` are replaced, and the browser is a stand-in with
just what the engine calls; the engine's own open and close paths run unchanged."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from broker.engines import camoufox as camoufox_engine
from broker.engines.playwright.engine import Launcher, PlaywrightEngine
from broker.leases.lease import LeaseSpec
from broker.model.options import EngineName, Isolation
from broker.warm.pool import WarmPool


class FakePage:
    def on(self, event: str, handler: Any) -> None:
        pass

    def is_closed(self) -> bool:
        return False

    async def evaluate(self, expression: str) -> int:
        return 1


class FakeContext:
    def __init__(self, browser: FakeBrowser) -> None:
        self.browser = browser
        self.pages = [FakePage()]

    def on(self, event: str, handler: Any) -> None:
        pass

    async def new_page(self) -> FakePage:
        return self.pages[0]

    async def close(self) -> None:
        self.browser.contexts.remove(self)


class FakeBrowser:
    def __init__(self, from_options: dict[str, Any]) -> None:
        self.from_options = from_options
        self.contexts: list[FakeContext] = []
        self.connected = True

    def is_connected(self) -> bool:
        return self.connected

    async def new_context(self, **kwargs: Any) -> FakeContext:
        context = FakeContext(self)
        self.contexts.append(context)
        return context

    async def close(self) -> None:
        self.connected = False


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> PlaywrightEngine:
    """A Camoufox engine that believes it is installed, whose launches make FakeBrowsers."""
    import camoufox as package
    import camoufox.fpgen_model

    monkeypatch.setenv("CAMOUFOX_EXECUTABLE_PATH", "/bin/true")
    monkeypatch.setattr(camoufox.fpgen_model, "is_pinned", lambda: True)
    drawn = itertools.count(1)

    def launch_options(**kwargs: Any) -> dict[str, Any]:
        # Where Camoufox draws a fingerprint: a new one on every call.
        return {"executable_path": kwargs["executable_path"], "fingerprint": next(drawn)}

    async def new_browser(playwright: Any, from_options: dict[str, Any]) -> FakeBrowser:
        return FakeBrowser(from_options)

    monkeypatch.setattr(package, "launch_options", launch_options)
    monkeypatch.setattr(package, "AsyncNewBrowser", new_browser)
    engine = camoufox_engine.create()
    assert engine.availability().available, engine.availability().detail

    async def launch(launcher: Launcher | None = None) -> Any:
        assert launcher is not None  # a dedicated browser is launched from its own launcher
        return await launcher(None)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "_launch", launch)
    return engine


async def test_each_pooled_camoufox_browser_has_a_fingerprint_of_its_own(
    engine: PlaywrightEngine,
) -> None:
    async with WarmPool(engine, Isolation.BROWSER, 3) as pool:
        await pool.filled.wait()
        browsers = [session.browser for session in pool.sessions()]  # type: ignore[attr-defined]
        fingerprints = [b.from_options["fingerprint"] for b in browsers]
        assert sorted(fingerprints) == [1, 2, 3]  # one draw per browser, none shared
        lent = pool.take(LeaseSpec(EngineName.CAMOUFOX, Isolation.BROWSER, 60, 60))
        assert lent is not None and lent.alive
        await lent.close()  # closed with its lease: the dedicated browser goes too
        assert not lent.browser.is_connected()  # type: ignore[attr-defined]
    assert all(not b.is_connected() for b in browsers)
    assert engine.sessions == set()

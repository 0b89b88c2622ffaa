"""Engine adapters without launching a browser: discovery, Camoufox detection and its options."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration

from broker.api import decode
from broker.engines import camoufox as camoufox_engine
from broker.engines import firefox
from broker.engines.discovery import BrowserExecutable
from broker.engines.playwright.driver import first_line
from broker.engines.playwright.engine import PlaywrightEngine
from broker.engines.playwright.session import _classify
from broker.errors import EngineNotInstalled, InvalidArgument, Unavailable
from broker.model.options import (
    CamoufoxOptions,
    ContextOptions,
    EngineName,
    Isolation,
    ProxySettings,
    Viewport,
)
from broker.model.steps.base import Step, StepErrorKind
from broker.model.steps.navigation import Goto
from broker.runtime.settings import Settings
from browserbroker.v1 import broker_pb2 as pb

SETTINGS = Settings(engines=[EngineName.CHROMIUM, EngineName.CAMOUFOX])  # type: ignore[call-arg]

# --------------------------------------------------------------------------------- firefox


def test_firefox_protocol_follows_the_build() -> None:
    managed = "/root/.cache/ms-playwright/firefox-1490/firefox/firefox"
    assert firefox.protocol_for(BrowserExecutable(managed, "playwright")) == firefox.JUGGLER
    assert firefox.protocol_for(BrowserExecutable(managed, "setting")) == firefox.JUGGLER
    assert firefox.protocol_for(BrowserExecutable("/usr/bin/firefox", "system")) == firefox.BIDI
    assert firefox.protocol_for(BrowserExecutable("/opt/ff/firefox", "setting")) == firefox.BIDI


def test_firefox_capabilities_per_protocol(tmp_path: Path) -> None:
    juggler_exe = tmp_path / "ms-playwright" / "firefox-1490" / "firefox" / "firefox"
    juggler_exe.parent.mkdir(parents=True)
    juggler_exe.write_text("#!/bin/sh\n")
    juggler_exe.chmod(0o755)
    juggler = firefox.create(str(juggler_exe))
    assert juggler.availability().available and "over juggler" in juggler.availability().detail
    assert not juggler.supports_pdf and not juggler.unsupported_context
    stock = tmp_path / "firefox"
    stock.write_text("#!/bin/sh\n")
    stock.chmod(0o755)
    bidi = firefox.create(str(stock))
    assert "over webdriver-bidi" in bidi.availability().detail
    assert bidi.supports_pdf and "java_script_disabled" in bidi.unsupported_context
    missing = firefox.create(str(tmp_path / "nope"))
    assert not missing.availability().available
    assert "is not an executable file" in missing.availability().detail


def test_bidi_navigation_errors_keep_their_cause() -> None:
    message = (
        "Page.goto: Protocol error (browsingContext.navigate): unknown error\n"
        "Message: Error: NS_ERROR_UNKNOWN_HOST at http://nonexistent.invalid/\n"
        "Call log:\n  - navigating to ..."
    )
    assert first_line(message) == (
        "Page.goto: Protocol error (browsingContext.navigate): unknown error: "
        "Error: NS_ERROR_UNKNOWN_HOST at http://nonexistent.invalid/"
    )
    assert first_line("Page.goto: net::ERR_NAME_NOT_RESOLVED at x\nCall log:") == (
        "Page.goto: net::ERR_NAME_NOT_RESOLVED at x"
    )
    from playwright.async_api import Error

    error = Error("Page.goto: Protocol error (browsingContext.navigate): unknown error")
    error._message = "Protocol error (browsingContext.navigate): Message: deniedPortAccess"
    assert _classify(Step(Goto("http://127.0.0.1:1/"), 5.0), error) is StepErrorKind.NAVIGATION


# -------------------------------------------------------------------------------- camoufox


def test_camoufox_without_the_package_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "camoufox", None)
    engine = camoufox_engine.create()
    assert not engine.availability().available
    assert "pip install 'browser-broker[camoufox]'" in engine.availability().detail


def test_camoufox_without_its_browser_is_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import camoufox.pkgman
    from camoufox.exceptions import CamoufoxNotInstalled

    def not_installed(download_if_missing: bool = True) -> Path:
        assert not download_if_missing, "the check must never download"
        raise CamoufoxNotInstalled(
            "official 1.0-beta.1 is not installed. Please run `camoufox fetch` to install."
        )

    monkeypatch.delenv("CAMOUFOX_EXECUTABLE_PATH", raising=False)
    monkeypatch.setattr(camoufox.pkgman, "INSTALL_DIR", tmp_path / "absent")
    monkeypatch.setattr(camoufox.pkgman, "camoufox_path", not_installed)
    engine = camoufox_engine.create()
    detail = engine.availability().detail
    assert not engine.availability().available
    assert detail == (
        "Camoufox browser not installed: run `python -m camoufox fetch` "
        "(official 1.0-beta.1 is not installed)"
    )


@pytest.fixture
def fake_install(monkeypatch: pytest.MonkeyPatch) -> PlaywrightEngine:
    """A Camoufox engine that believes it is installed (nothing is launched by these tests)."""
    import camoufox.fpgen_model

    monkeypatch.setenv("CAMOUFOX_EXECUTABLE_PATH", "/bin/true")
    monkeypatch.setattr(camoufox.fpgen_model, "is_pinned", lambda: True)
    engine = camoufox_engine.create()
    assert engine.availability().available, engine.availability().detail
    return engine


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replaces camoufox.launch_options; what it was called with lands in the returned dict."""
    import camoufox as package

    calls: dict[str, Any] = {}

    def fake_launch_options(**kwargs: Any) -> dict[str, Any]:
        calls.update(kwargs)
        return {"executable_path": kwargs["executable_path"], "env": {}}

    monkeypatch.setattr(package, "launch_options", fake_launch_options)
    return calls


async def test_camoufox_options_reach_launch_options(
    fake_install: PlaywrightEngine, captured: dict[str, Any]
) -> None:
    assert (
        isinstance(fake_install, camoufox_engine.CamoufoxEngine)
        and fake_install.install is not None
    )
    options = CamoufoxOptions(
        os=("windows", "macos"),
        humanize=True,
        humanize_max_s=2.5,
        block_images=True,
        block_webrtc=True,
        locales=("de-DE", "en-US"),
        window=Viewport(1280, 800),
    )
    launcher = await fake_install._prepare(options, ContextOptions())
    assert launcher is not None
    assert captured["executable_path"] == "/bin/true"
    assert captured["os"] == ["windows", "macos"]
    assert captured["humanize"] == 2.5
    assert captured["block_images"] is True and captured["block_webrtc"] is True
    assert "block_webgl" not in captured and "geoip" not in captured and "proxy" not in captured
    assert captured["locale"] == ["de-DE", "en-US"]
    assert captured["window"] == (1280, 800)
    if not fake_install.install.ublock:
        from camoufox.addons import DefaultAddons

        assert captured["exclude_addons"] == [DefaultAddons.UBO]  # never downloaded at launch


async def test_camoufox_geoip_goes_through_the_proxy(
    fake_install: PlaywrightEngine, captured: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        isinstance(fake_install, camoufox_engine.CamoufoxEngine)
        and fake_install.install is not None
    )
    context = ContextOptions(proxy=ProxySettings("http://proxy:3128", "u", "p"))
    if not fake_install.install.geoip:
        with pytest.raises(EngineNotInstalled, match="GeoIP database"):
            await fake_install._prepare(CamoufoxOptions(geoip=True), context)
        monkeypatch.setattr(
            fake_install, "install", camoufox_engine.CamoufoxInstall("/bin/true", "x", False, True)
        )
    kwargs = camoufox_engine.launch_kwargs(
        CamoufoxOptions(geoip=True, humanize=True), context, True, fake_install.install
    )
    assert kwargs["geoip"] is True and kwargs["humanize"] is True
    assert kwargs["proxy"] == {"server": "http://proxy:3128", "username": "u", "password": "p"}


async def test_camoufox_errors_become_broker_errors(
    fake_install: PlaywrightEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import camoufox as package
    from camoufox.exceptions import InvalidLocale

    def bad_locale(**kwargs: Any) -> dict[str, Any]:
        raise InvalidLocale("Invalid locale: 'xx-QQ'")

    monkeypatch.setattr(package, "launch_options", bad_locale)
    with pytest.raises(InvalidArgument) as bad:
        await fake_install._prepare(CamoufoxOptions(locales=("xx-QQ",)), ContextOptions())
    assert bad.value.violations[0].field == "camoufox.locales"

    def broken(**kwargs: Any) -> dict[str, Any]:
        raise KeyError("vendor")

    monkeypatch.setattr(package, "launch_options", broken)
    with pytest.raises(Unavailable, match="camoufox could not prepare a browser"):
        await fake_install._prepare(None, ContextOptions())


async def test_camoufox_refuses_a_viewport_before_launching(
    fake_install: PlaywrightEngine,
) -> None:
    with pytest.raises(InvalidArgument) as bad:
        await fake_install.open_session(
            Isolation.CONTEXT, ContextOptions(viewport=Viewport(800, 600))
        )
    assert [v.field for v in bad.value.violations] == ["context.viewport"]
    assert fake_install.census().browsers == 0


async def test_browser_options_need_an_engine_that_takes_them() -> None:
    engine = firefox.create("/usr/bin/env")  # any executable: nothing is launched
    with pytest.raises(InvalidArgument) as bad:
        await engine.open_session(Isolation.BROWSER, ContextOptions(), CamoufoxOptions())
    assert [v.field for v in bad.value.violations] == ["camoufox"]


# ------------------------------------------------------------------------ AcquireRequest


def spec_of(**fields: Any) -> Any:
    return decode.lease_spec(pb.AcquireRequest(**fields), SETTINGS)


def violations_of(**fields: Any) -> list[str]:
    with pytest.raises(InvalidArgument) as bad:
        spec_of(**fields)
    return [v.field for v in bad.value.violations]


def test_camoufox_options_imply_a_browser_of_the_lease_own() -> None:
    spec = spec_of(
        engine=pb.ENGINE_CAMOUFOX,
        camoufox=pb.CamoufoxOptions(
            os=["linux"],
            humanize=True,
            humanize_max=Duration(seconds=2),
            locales=["fr-FR"],
            window=pb.Viewport(width=1366, height=768),
            geoip=True,
        ),
    )
    assert spec.isolation is Isolation.BROWSER
    assert spec.camoufox == CamoufoxOptions(
        os=("linux",),
        humanize=True,
        humanize_max_s=2.0,
        geoip=True,
        locales=("fr-FR",),
        window=Viewport(1366, 768),
    )
    assert spec_of(engine=pb.ENGINE_CAMOUFOX).camoufox is None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"engine": pb.ENGINE_CHROMIUM, "camoufox": pb.CamoufoxOptions()}, ["camoufox"]),
        ({"camoufox": pb.CamoufoxOptions()}, ["camoufox"]),  # the default engine is chromium
        (
            {
                "engine": pb.ENGINE_CAMOUFOX,
                "isolation": pb.ISOLATION_CONTEXT,
                "camoufox": pb.CamoufoxOptions(),
            },
            ["isolation"],
        ),
        (
            {"engine": pb.ENGINE_CAMOUFOX, "camoufox": pb.CamoufoxOptions(os=["linux", "Linux"])},
            ["camoufox.os[1]"],
        ),
        (
            {"engine": pb.ENGINE_CAMOUFOX, "camoufox": pb.CamoufoxOptions(os=["linux", "linux"])},
            ["camoufox.os[1]"],
        ),
        (
            {
                "engine": pb.ENGINE_CAMOUFOX,
                "camoufox": pb.CamoufoxOptions(humanize_max=Duration(seconds=1)),
            },
            ["camoufox.humanize_max"],
        ),
        (
            {
                "engine": pb.ENGINE_CAMOUFOX,
                "camoufox": pb.CamoufoxOptions(humanize=True, humanize_max=Duration(seconds=11)),
            },
            ["camoufox.humanize_max"],
        ),
        (
            {
                "engine": pb.ENGINE_CAMOUFOX,
                "camoufox": pb.CamoufoxOptions(humanize=True, humanize_max=Duration(seconds=-1)),
            },
            ["camoufox.humanize_max"],
        ),
        (
            {"engine": pb.ENGINE_CAMOUFOX, "camoufox": pb.CamoufoxOptions(locales=["en"] * 9)},
            ["camoufox.locales"],
        ),
        (
            {"engine": pb.ENGINE_CAMOUFOX, "camoufox": pb.CamoufoxOptions(locales=["en US"])},
            ["camoufox.locales[0]"],
        ),
        (
            {
                "engine": pb.ENGINE_CAMOUFOX,
                "camoufox": pb.CamoufoxOptions(window=pb.Viewport(width=10_001, height=10)),
            },
            ["camoufox.window"],
        ),
    ],
)
def test_bad_camoufox_options_are_named(fields: dict[str, Any], expected: list[str]) -> None:
    assert violations_of(**fields) == expected


# ------------------------------------------------------------------- open-time estimates


async def test_open_time_estimate_is_per_engine_and_isolation() -> None:
    """Slow Firefox browser launches must not make fast Chromium contexts refuse short deadlines."""

    from broker.errors import DeadlineExceeded
    from broker.leases.lease import LeaseSpec, ReleaseReason
    from broker.leases.limits import Limits
    from broker.leases.table import LeaseTable
    from tests.fakes import FakeClock, FakeEngine, ReleaseRecorder

    clock = FakeClock()
    chromium, slow = FakeEngine(EngineName.CHROMIUM), FakeEngine(EngineName.FIREFOX)
    leases = LeaseTable(
        {EngineName.CHROMIUM: chromium, EngineName.FIREFOX: slow},
        clock,
        Limits(capacity=8, queue_limit=8, ttl_jitter_fraction=0.0),
        ReleaseRecorder(),
    )
    dedicated_firefox = LeaseSpec(EngineName.FIREFOX, Isolation.BROWSER, 60, 60)
    for _ in range(3):
        slow.open_gate = asyncio.Event()
        acquiring = asyncio.create_task(leases.acquire(dedicated_firefox, None))
        await asyncio.sleep(0)
        clock.advance(5)  # this launch takes 5s
        slow.open_gate.set()
        leases.release(await acquiring, ReleaseReason.CLIENT_RELEASE)
    slow.open_gate = None
    assert leases.estimates.expected_open_s(EngineName.FIREFOX, Isolation.BROWSER) == 5
    assert leases.estimates.expected_open_s(EngineName.CHROMIUM, Isolation.CONTEXT) is None
    fast = await leases.acquire(LeaseSpec(EngineName.CHROMIUM, Isolation.CONTEXT, 60, 60), 1.0)
    leases.release(fast, ReleaseReason.CLIENT_RELEASE)
    with pytest.raises(DeadlineExceeded, match=r"takes about 5\.00s"):
        await leases.acquire(dedicated_firefox, 1.0)
    await leases.wait_all_closed()


async def test_dropped_aborted_calls_are_not_logged_as_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An aborted Playwright call's dropped future is debug noise; other dropped errors are not."""
    import asyncio
    import gc

    from playwright.async_api import Error as PlaywrightError

    from broker.engines.playwright.driver import quiet_aborted_calls

    loop = asyncio.get_running_loop()
    quiet_aborted_calls(loop)
    quiet_aborted_calls(loop)  # idempotent: one handler, not a chain of them

    def drop(error: Exception) -> None:
        future: asyncio.Future[None] = loop.create_future()
        future.set_exception(error)
        del future
        gc.collect()

    with caplog.at_level("DEBUG"):
        drop(PlaywrightError("Task was cancelled\nCall log:\n  - operation was aborted"))
        drop(PlaywrightError("Target crashed"))
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "never retrieved" in errors[0]
    assert "Target crashed" in caplog.text
    assert "an aborted browser call was dropped: Task was cancelled" in caplog.text


async def test_a_driver_that_does_not_start_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Playwright's driver start is waited on for a bounded time, then answered UNAVAILABLE."""
    from broker.engines.playwright import driver as playwright_driver
    from broker.errors import Unavailable

    async def stuck() -> object:
        await asyncio.Event().wait()  # never starts
        raise AssertionError

    monkeypatch.setattr(playwright_driver, "start_driver", stuck)
    driver = playwright_driver.Driver(on_lost=lambda: None)
    with pytest.raises(Unavailable, match=r"did not start within 0\.05s"):
        await asyncio.wait_for(driver.ensure(0.05), 5)
    await driver.stop()

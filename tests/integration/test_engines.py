"""The lease contract on every engine and isolation mode, through the SDK, on real browsers.

Chromium and Firefox run the same contract with a shared browser (ISOLATION_CONTEXT) and with a
browser of the lease's own (ISOLATION_BROWSER, whose process must be gone once the lease ends).
Camoufox runs it too when its browser is installed; otherwise the broker must say why, and
keep serving the other engines.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from broker.engines.playwright.engine import PlaywrightEngine
from broker.model.options import EngineName
from browserbroker import (
    CamoufoxOptions,
    ContextOptions,
    DeadlineExceededError,
    Engine,
    EngineUnavailableError,
    InvalidArgumentError,
    Isolation,
    LeaseEndedError,
    Viewport,
    steps,
)
from browserbroker.v1 import broker_pb2 as pb
from tests.conftest import BrokerFactory, require
from tests.fixture_site import FixtureSite
from tests.support import (
    ROUTE_MODES,
    STOP_BOUND_S,
    STOP_KINDS,
    InProcessBroker,
    command_line,
    eventually,
    last_ping_after,
    unhold_routes,
    work_for,
)
from tests.support import STOP_DEADLINE_S as DEADLINE_S

pytestmark = pytest.mark.browser

SDK_ENGINE = {"chromium": Engine.CHROMIUM, "firefox": Engine.FIREFOX, "camoufox": Engine.CAMOUFOX}
SDK_ISOLATION = {"context": Isolation.CONTEXT, "browser": Isolation.BROWSER}
ENGINES = pytest.mark.parametrize("engine", ["chromium", "firefox"])
ISOLATIONS = pytest.mark.parametrize("isolation", ["context", "browser"])


def _camoufox_installed() -> bool:
    from broker.engines import camoufox

    return camoufox.create(True).availability().available


CAMOUFOX_INSTALLED = _camoufox_installed()

TestFn = TypeVar("TestFn", bound=Callable[..., Any])


def only_where(condition: bool) -> Callable[[TestFn], TestFn | None]:
    """Defines the test only where it applies: Camoufox's browser is either installed here or
    not, and exactly one of its two test sets runs (nothing is skipped)."""

    def decide(test: TestFn) -> TestFn | None:
        return test if condition else None

    return decide


async def start(factory: BrokerFactory, engine: str, **overrides: object) -> InProcessBroker:
    """A broker with `engine` beside Chromium (the default); skips (fails in CI) if it cannot run."""
    names = ["chromium"] if engine == "chromium" else ["chromium", engine]
    running = await factory(engines=names, default_engine="chromium", **overrides)
    availability = running.broker.engines[EngineName(engine)].availability()
    require(availability.available, f"{engine} unavailable: {availability.detail}")
    return running


def engine_of(running: InProcessBroker, engine: str) -> PlaywrightEngine:
    found = running.broker.engines[EngineName(engine)]
    assert isinstance(found, PlaywrightEngine)
    return found


async def gone(pids: set[int], timeout_s: float = 10) -> bool:
    """True once none of `pids` is a live process (zombies count as gone)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return True
        await asyncio.sleep(0.05)
    return False


async def contract(
    running: InProcessBroker, site: FixtureSite, engine: str, isolation: str
) -> None:
    """acquire -> steps -> deadline on /slow (lease survives) -> release, no process left."""
    pw_engine = engine_of(running, engine)
    before = set(pw_engine.census().browser_pids)
    lease = await running.client.acquire(
        engine=SDK_ENGINE[engine], isolation=SDK_ISOLATION[isolation], ttl=120, timeout=60
    )
    assert lease.grant.engine is SDK_ENGINE[engine]
    assert lease.grant.isolation is SDK_ISOLATION[isolation]
    during = set(pw_engine.census().browser_pids)
    # ISOLATION_BROWSER: the lease's own browser. ISOLATION_CONTEXT: the shared browser, which
    # the first lease launches (the test brokers keep no warm pool).
    launched = during - before
    assert len(launched) == 1, f"expected one new browser process, got {launched}"

    work = [
        steps.goto(site.url("form.html")),
        steps.fill("#name", "Ada"),
        steps.click("#go"),
        steps.text("#out"),
        steps.evaluate("document.title"),
        steps.evaluate("(x) => x * 2", 21),
        steps.attribute("#link", "data-kind"),
        steps.screenshot(),
    ]
    if pw_engine.supports_pdf:
        work.append(steps.pdf())
    result = (await lease.run(*work, timeout=30)).raise_for_failure()
    assert result[0].http_status == 200
    assert result[3].text == "Hello, Ada"
    assert result[4].value == "Fixture form"
    assert result[5].value == 42
    assert result[6].found and result[6].text == "internal"
    assert result[7].data.startswith(b"\x89PNG")
    if pw_engine.supports_pdf:
        assert result[8].data.startswith(b"%PDF")
    else:
        unsupported = await lease.run(steps.pdf(), timeout=10)
        assert unsupported[0].error_kind == "unsupported"

    with pytest.raises(DeadlineExceededError):
        await lease.run(steps.goto(site.url("slow?seconds=20")), timeout=1)
    again = await lease.run(steps.evaluate("1 + 1"), steps.evaluate("location.href"), timeout=10)
    assert again[0].value == 2 and again[1].value == "about:blank"  # a fresh page, same lease

    outcome = await lease.release()
    assert outcome.released_now and outcome.reason == "client_release"
    if isolation == "browser":  # Release answers at once; the browser closes in the background
        assert await gone(launched), f"the lease's browser outlived it: {launched}"
        await running.broker.leases.wait_all_closed()
        assert not (set(pw_engine.census().browser_pids) & launched)
    else:
        after = set(pw_engine.census().browser_pids)
        assert launched <= after  # the shared browser stays for the next lease
    await running.check_no_leftovers()


@ENGINES
@ISOLATIONS
async def test_lease_contract(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: str, isolation: str
) -> None:
    running = await start(broker_factory, engine)
    await contract(running, fixture_server, engine, isolation)


@ENGINES
@ISOLATIONS
async def test_ttl_expiry_ends_the_lease_and_its_browser(
    broker_factory: BrokerFactory, engine: str, isolation: str
) -> None:
    running = await start(broker_factory, engine, ttl_jitter_fraction=0.0)
    pw_engine = engine_of(running, engine)
    before = set(pw_engine.census().browser_pids)
    lease = await running.client.acquire(
        engine=SDK_ENGINE[engine], isolation=SDK_ISOLATION[isolation], ttl=1, idle_timeout=60
    )
    launched = set(pw_engine.census().browser_pids) - before
    await asyncio.sleep(1.5)
    with pytest.raises(LeaseEndedError) as ended:
        await lease.run(steps.evaluate("1"), timeout=5)
    assert ended.value.reason == "ttl_expired"
    assert (await lease.release()).reason == "ttl_expired"
    if isolation == "browser":
        assert await gone(launched), f"the expired lease's browser outlived it: {launched}"


@ENGINES
async def test_context_options_apply(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: str
) -> None:
    running = await start(broker_factory, engine)
    context = ContextOptions(
        viewport=Viewport(width=800, height=600),
        user_agent="broker-test/1.0",
        locale="de-DE",
        timezone_id="Asia/Tokyo",
        extra_http_headers={"X-Broker-Test": "yes"},
    )
    async with running.client.lease(engine=SDK_ENGINE[engine], context=context) as lease:
        result = await lease.run(
            steps.goto(fixture_server.url("form.html")),
            steps.evaluate(
                "[innerWidth, innerHeight, navigator.userAgent, navigator.language,"
                " Intl.DateTimeFormat().resolvedOptions().timeZone]"
            ),
            timeout=30,
        )
        assert result.raise_for_failure()[1].value == [
            800,
            600,
            "broker-test/1.0",
            "de-DE",
            "Asia/Tokyo",
        ]


async def test_firefox_refuses_context_options_it_would_ignore(
    broker_factory: BrokerFactory,
) -> None:
    running = await start(broker_factory, "firefox")
    pw_engine = engine_of(running, "firefox")
    if "java_script_disabled" not in pw_engine.unsupported_context:
        pytest.skip("Playwright's Firefox (Juggler) honours java_script_disabled")
    with pytest.raises(InvalidArgumentError) as bad:
        await running.client.acquire(
            engine=Engine.FIREFOX, context=ContextOptions(java_script_disabled=True)
        )
    assert [v.field for v in bad.value.violations] == ["context.java_script_disabled"]
    assert pw_engine.census().browsers == 0  # refused before anything was launched


async def test_firefox_navigation_errors_are_classified(broker_factory: BrokerFactory) -> None:
    running = await start(broker_factory, "firefox")
    async with running.client.lease(engine=Engine.FIREFOX) as lease:
        result = await lease.run(
            steps.goto("http://127.0.0.1:1/"),  # a port browsers refuse
            steps.goto("http://nonexistent.invalid/"),
            continue_on_error=True,
            timeout=30,
        )
    assert [r.error_kind for r in result] == ["navigation", "navigation"]
    # The egress route resolves names: an unknown host fails as the browser's own would.
    assert "ERR_NAME_NOT_RESOLVED" in result[1].error_message


@pytest.mark.parametrize("route", ROUTE_MODES)
@pytest.mark.parametrize("kind", STOP_KINDS)
async def test_firefox_deadline_stops_the_work_in_the_browser(
    broker_factory: BrokerFactory,
    fixture_server: FixtureSite,
    kind: str,
    route: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Closing the page (what a deadline does) stops the work over BiDi too: seen at the site
    with the route's hold, and from the pages' send times without it."""
    if route == "unheld":
        unhold_routes(monkeypatch)
    running = await start(broker_factory, "firefox")
    async with running.client.lease(engine=Engine.FIREFOX) as lease:
        ping_id = uuid.uuid4().hex
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            await lease.run(*work_for(kind, fixture_server, ping_id), timeout=DEADLINE_S)
        assert fixture_server.pings.times(ping_id), "the page never pinged"
        last = await asyncio.wait_for(
            last_ping_after(fixture_server, ping_id, sent=route == "unheld"), 30
        )
        latency = last - (started + DEADLINE_S)
        assert latency < STOP_BOUND_S, f"{kind} went on {latency:.3f}s after the deadline"
        again = await lease.run(steps.evaluate("1 + 1"), timeout=10)
        assert again[0].value == 2


def content_processes(pid: int) -> list[psutil.Process]:
    """Firefox's per-tab content processes below its main process `pid`."""
    found = []
    for proc in psutil.Process(pid).children(recursive=True):
        argv = command_line(proc)
        if "-contentproc" in argv and argv[-1] == "tab":
            found.append(proc)
    return found


@ISOLATIONS
async def test_firefox_content_crash_ends_the_leases_of_its_browser(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, isolation: str
) -> None:
    """Over BiDi, Playwright starts Firefox with MOZ_CRASHREPORTER_SHUTDOWN=1: a crashed content
    process shuts the whole browser down, so every lease on that browser ends (engine_crashed);
    a lease with a browser of its own is not touched."""
    running = await start(broker_factory, "firefox")
    pw_engine = engine_of(running, "firefox")
    sdk_isolation = SDK_ISOLATION[isolation]
    victim = await running.client.acquire(engine=Engine.FIREFOX, isolation=sdk_isolation)
    await victim.run(steps.goto(fixture_server.url("form.html")), timeout=10)
    (victim_pid,) = pw_engine.census().browser_pids
    other = await running.client.acquire(engine=Engine.FIREFOX, isolation=sdk_isolation)
    tabs = content_processes(victim_pid)
    assert tabs
    for tab in tabs:
        tab.kill()
    lease = running.broker.leases
    await eventually(lambda: lease.active_count < 2)
    with pytest.raises(LeaseEndedError) as ended:
        await victim.run(steps.evaluate("1"), timeout=5)
    assert ended.value.reason in ("engine_crashed", "page_crashed")
    if isolation == "context":  # the shared browser went down with every lease on it
        await eventually(lambda: lease.active_count == 0)
        assert (await other.release()).reason == "engine_crashed"
    else:
        assert (await other.run(steps.evaluate("2"), timeout=10))[0].value == 2
        await other.release()
    async with running.client.lease(engine=Engine.FIREFOX, isolation=sdk_isolation) as fresh:
        assert (await fresh.run(steps.evaluate("3"), timeout=10))[0].value == 3


# ---------------------------------------------------------------------------------- camoufox


@only_where(CAMOUFOX_INSTALLED)
@ISOLATIONS
async def test_camoufox_lease_contract(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, isolation: str
) -> None:
    running = await start(broker_factory, "camoufox")
    await contract(running, fixture_server, "camoufox", isolation)


@only_where(CAMOUFOX_INSTALLED)
async def test_camoufox_options_launch_a_browser_of_the_lease_own(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    running = await start(broker_factory, "camoufox")
    options = CamoufoxOptions(os=["windows"], locales=["de-DE"], block_webrtc=True)
    async with running.client.lease(engine=Engine.CAMOUFOX, camoufox=options) as lease:
        assert lease.grant.isolation is Isolation.BROWSER  # implied by the options
        result = await lease.run(
            steps.goto(fixture_server.url("form.html")),
            steps.evaluate("[navigator.platform, navigator.language]"),
            timeout=30,
        )
        platform, language = result.raise_for_failure()[1].value
        assert platform.startswith("Win") and language == "de-DE"


@only_where(not CAMOUFOX_INSTALLED)
async def test_camoufox_not_installed_is_reported_and_the_broker_serves_on(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    running = await broker_factory(engines=["chromium", "camoufox"], default_engine="chromium")
    client = running.client
    with pytest.raises(EngineUnavailableError) as unavailable:
        await client.acquire(engine=Engine.CAMOUFOX, timeout=10)
    assert unavailable.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert "python -m camoufox fetch" in unavailable.value.details
    assert unavailable.value.metadata.get("engine") == "camoufox"
    with pytest.raises(EngineUnavailableError):  # with options too: checked before launching
        await client.acquire(engine=Engine.CAMOUFOX, camoufox=CamoufoxOptions(humanize=True))

    status = await client.status()
    by_engine = {e.engine: e for e in status.engines}
    assert not by_engine[pb.ENGINE_CAMOUFOX].available
    assert "Camoufox browser not installed" in by_engine[pb.ENGINE_CAMOUFOX].detail
    assert "python -m camoufox fetch" in by_engine[pb.ENGINE_CAMOUFOX].detail
    assert by_engine[pb.ENGINE_CHROMIUM].available
    assert status.active_leases == 0

    health = health_pb2_grpc.HealthStub(client.channel)
    check = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert check.status == health_pb2.HealthCheckResponse.SERVING
    async with client.lease(engine=Engine.CHROMIUM) as lease:
        result = await lease.run(
            steps.goto(fixture_server.url("form.html")), steps.text("h1"), timeout=30
        )
        assert result[1].text == "Fixture"


@pytest.mark.parametrize(
    ("request_kwargs", "field"),
    [
        ({"engine": Engine.CHROMIUM, "camoufox": CamoufoxOptions()}, "camoufox"),
        (
            {
                "engine": Engine.CAMOUFOX,
                "isolation": Isolation.CONTEXT,
                "camoufox": CamoufoxOptions(),
            },
            "isolation",
        ),
        ({"engine": Engine.CAMOUFOX, "camoufox": CamoufoxOptions(os=["beos"])}, "camoufox.os[0]"),
        (
            {"engine": Engine.CAMOUFOX, "camoufox": CamoufoxOptions(locales=["de-DE", "#"])},
            "camoufox.locales[1]",
        ),
        (
            {"engine": Engine.CAMOUFOX, "camoufox": CamoufoxOptions(window=Viewport(width=0))},
            "camoufox.window",
        ),
    ],
)
async def test_bad_camoufox_options_name_the_field(
    broker_factory: BrokerFactory, request_kwargs: dict[str, object], field: str
) -> None:
    running = await broker_factory(engines=["chromium", "camoufox"], default_engine="chromium")
    with pytest.raises(InvalidArgumentError) as bad:
        await running.client.acquire(**request_kwargs)  # type: ignore[arg-type]
    assert [v.field for v in bad.value.violations] == [field]

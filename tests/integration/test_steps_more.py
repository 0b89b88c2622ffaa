"""The steps real sites need, on real Chromium and Firefox, against the local fixture site:
input, history, waits, files in and out, pages and popups, cookies and storage state."""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager

import pytest

from broker.leases.events import LeaseObserver
from broker.leases.lease import Lease
from broker.model.steps.base import StepOutcome
from browserbroker import AsyncLease, ContextOptions, Cookie, Engine, steps
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite
from tests.integration.test_engines import SDK_ENGINE, start
from tests.support import InProcessBroker

pytestmark = pytest.mark.browser

ENGINES = pytest.mark.parametrize("engine", ["chromium", "firefox"])


async def broker_for(factory: BrokerFactory, engine: str) -> InProcessBroker:
    return await start(factory, engine, max_download_bytes=32 * 1024)


def lease_on(
    running: InProcessBroker, engine: str, context: ContextOptions | None = None
) -> AbstractAsyncContextManager[AsyncLease]:
    return running.client.lease(engine=SDK_ENGINE[engine], ttl=120, context=context)


@ENGINES
async def test_input_steps(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: str
) -> None:
    running = await broker_for(broker_factory, engine)
    async with lease_on(running, engine) as lease:
        result = await lease.run(
            steps.goto(fixture_server.url("controls.html")),
            steps.hover("#hoverme"),
            steps.text("#hovered"),
            steps.check("#agree"),
            steps.evaluate("document.getElementById('agree').checked"),
            steps.uncheck("#agree"),
            steps.evaluate("document.getElementById('agree').checked"),
            steps.select_option("#color", "Green"),
            steps.evaluate("document.getElementById('color').value"),
            steps.type_text("#typed", "abc", delay_s=0.01),
            steps.evaluate("[document.getElementById('typed').value, window.keys]"),
            steps.scroll("#bottom"),
            steps.evaluate("window.scrollY > 1000"),
            steps.scroll(delta_y=-100000),
            steps.evaluate("window.scrollY"),
            timeout=60,
        )
        result.raise_for_failure()
        assert result[2].text == "yes"
        assert result[4].value is True and result[6].value is False
        assert result[7].value == ["g"] and result[8].value == "g"
        assert result[10].value == ["abc", 3]
        assert result[12].value is True and result[14].value == 0


@ENGINES
async def test_history_and_waits(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: str
) -> None:
    running = await broker_for(broker_factory, engine)
    async with lease_on(running, engine) as lease:
        result = await lease.run(
            steps.goto(fixture_server.url("form.html")),
            steps.goto(fixture_server.url("controls.html")),
            steps.go_back(),
            steps.go_forward(),
            steps.reload(),
            steps.click("#push"),
            steps.wait_for_url("**/controls.html?step=2"),
            steps.click("#fetch"),
            steps.wait_for_response("**/api/data?*"),
            steps.click("#later"),
            steps.wait_for_function("window.ready"),
            timeout=60,
        )
        result.raise_for_failure()
        assert result[2].url.endswith("/form.html")
        assert result[3].url.endswith("/controls.html") and result[4].http_status == 200
        assert result[6].url.endswith("?step=2")
        assert result[8].http_status == 200 and result[8].text.endswith("/api/data?x=1")
        assert result[10].value == "now"
        # A wait that never matches is a timeout; a condition that throws is a script error.
        missed = await lease.run(
            steps.wait_for_response("**/never", timeout_s=1),
            steps.wait_for_url("**/never", timeout_s=1),
            steps.wait_for_function("window.never", timeout_s=1),
            steps.wait_for_function("null.boom"),
            continue_on_error=True,
            timeout=30,
        )
        assert [r.error_kind for r in missed] == ["timeout", "timeout", "timeout", "script_error"]


@ENGINES
async def test_upload_and_download(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: str
) -> None:
    running = await broker_for(broker_factory, engine)
    async with lease_on(running, engine) as lease:
        result = await lease.run(
            steps.goto(fixture_server.url("upload.html")),
            steps.set_input_files(
                "#file",
                steps.input_file("a.txt", b"alpha", "text/plain"),
                steps.input_file("b.csv", b"x,y", "text/csv"),
            ),
            steps.evaluate("window.files()"),
            steps.goto(fixture_server.url("download.html")),
            steps.download("#file"),
            timeout=60,
        )
        result.raise_for_failure()
        assert result[2].value == [
            {"name": "a.txt", "type": "text/plain", "text": "alpha"},
            {"name": "b.csv", "type": "text/csv", "text": "x,y"},
        ]
        assert result[4].data == b"quarterly report\n" and result[4].text == "report.txt"
        # 64 KiB against the broker's 32 KiB bound; a link that downloads nothing times out.
        too_big = await lease.run(
            steps.download("#big"),
            steps.download("#missing", timeout_s=1),
            continue_on_error=True,
            timeout=30,
        )
        assert too_big[0].error_kind == "too_large" and not too_big[0].data
        assert "65536 bytes" in too_big[0].error_message
        assert too_big[1].error_kind == "timeout"


@ENGINES
async def test_popup_flow_across_two_pages(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: str
) -> None:
    """OAuth-like: the app opens a popup, the user approves there, the popup closes itself and
    tells its opener; then a target=_blank tab is listed, used by id, and closed."""
    running = await broker_for(broker_factory, engine)
    async with lease_on(running, engine) as lease:
        first = await lease.run(
            steps.goto(fixture_server.url("app.html")),
            steps.click("#oauth"),
            steps.switch_page(url="**/oauth/authorize*"),
            steps.wait_for_selector("#approve"),
            steps.list_pages(),
            timeout=60,
        )
        first.raise_for_failure()
        app_id, popup_id = first[0].page_id, first[2].page_id
        assert app_id and popup_id and popup_id != app_id
        listed = {p.id: p for p in first[4].pages}
        assert listed[popup_id].current and listed[popup_id].opener_id == app_id
        assert listed[app_id].title == "App"
        second = await lease.run(
            steps.click("#approve"),  # the popup closes: its opener becomes current again
            steps.wait_for_selector("#status:has-text('connected: c0de')"),
            steps.text("#status"),
            timeout=60,
        )
        second.raise_for_failure()
        assert second[2].text == "connected: c0de" and second[2].page_id == app_id
        tabs = await lease.run(
            steps.click("#blank"),
            steps.switch_page(url="**/form.html?from=blank"),
            steps.within(steps.text("#status"), page_id=app_id),  # another page, by id
            steps.fill("#name", "tab"),
            steps.close_page(),
            steps.list_pages(),
            timeout=60,
        )
        tabs.raise_for_failure()
        assert tabs[2].text == "connected: c0de"
        assert tabs[4].page_id == app_id and [p.id for p in tabs[5].pages] == [app_id]
        gone = await lease.run(
            steps.switch_page(page_id="p999"),
            steps.within(steps.text("h1"), page_id="p999"),
            continue_on_error=True,
            timeout=30,
        )
        assert [r.error_kind for r in gone] == ["browser", "browser"]
        assert "no open page 'p999'" in gone[0].error_message


@ENGINES
async def test_bring_to_front_activates_a_tab_and_keeps_the_current_page(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: str
) -> None:
    running = await broker_for(broker_factory, engine)
    focused = "document.hasFocus()"
    async with lease_on(running, engine) as lease:
        opened = await lease.run(
            steps.goto(fixture_server.url("app.html")),
            steps.click("#blank"),  # the site opens a second tab
            steps.switch_page(url="**/form.html?from=blank"),
            timeout=60,
        )
        opened.raise_for_failure()
        app_id, tab_id = opened[0].page_id, opened[2].page_id
        fronted = await lease.run(
            steps.within(steps.bring_to_front(), page_id=app_id),
            steps.within(steps.evaluate(focused), page_id=app_id),
            steps.evaluate(focused),
            steps.bring_to_front(),
            steps.within(steps.evaluate(focused), page_id=app_id),
            steps.evaluate(focused),
            timeout=60,
        )
        fronted.raise_for_failure()
        assert [r.page_id for r in fronted] == [tab_id] * 6  # the tab stays current
        focus = [fronted[i].value for i in (1, 2, 4, 5)]
        if engine == "firefox":
            assert focus == [True, False, False, True]  # the fronted page has the focus
        else:  # headless Chromium: Playwright emulates focus in every page
            assert focus == [True, True, True, True]


@ENGINES
async def test_steps_inside_an_iframe(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: str
) -> None:
    running = await broker_for(broker_factory, engine)
    async with lease_on(running, engine) as lease:
        result = await lease.run(
            steps.goto(fixture_server.url("iframe?src=/form.html")),
            steps.within(steps.fill("#name", "Ada"), frame_selector="iframe"),
            steps.within(steps.click("#go"), frame_selector="iframe"),
            steps.within(steps.text("#out"), frame_selector="iframe"),
            steps.within(steps.evaluate("document.title"), frame_selector="iframe"),
            steps.text("h1"),
            steps.within(steps.text("#out"), frame_selector="h1"),
            continue_on_error=True,
            timeout=60,
        )
        assert [r.ok for r in result[:6]] == [True] * 6
        assert result[3].text == "Hello, Ada" and result[4].value == "Fixture form"
        assert result[5].text == "iframe"
        assert result[6].error_kind == "selector" and "not an iframe" in result[6].error_message


@ENGINES
async def test_login_keeps_across_leases_by_storage_state(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: str
) -> None:
    """Lease 1 signs in through a form and exports its storage state; lease 2 starts from it
    and is signed in (cookie and local storage); a lease without it is not."""
    running = await broker_for(broker_factory, engine)
    async with lease_on(running, engine) as lease:
        signed_in = await lease.run(
            steps.goto(fixture_server.url("login.html")),
            steps.fill("#user", "ada"),
            steps.fill("#password", "secret"),
            steps.click("#submit"),
            steps.wait_for_url("**/account"),
            steps.text("#who"),
            steps.storage_state(),
            timeout=60,
        )
        signed_in.raise_for_failure()
        assert signed_in[5].text == "signed in as ada"
        state = signed_in[6].data
        parsed = json.loads(state)
        assert [c["name"] for c in parsed["cookies"]] == ["session"]
    async with lease_on(running, engine, context=ContextOptions(storage_state=state)) as lease:
        again = await lease.run(
            steps.goto(fixture_server.url("account")),
            steps.text("#who"),
            steps.text("#stored"),
            timeout=60,
        )
        again.raise_for_failure()
        assert again[1].text == "signed in as ada" and again[2].text == "ada"
    async with lease_on(running, engine) as lease:
        fresh = await lease.run(
            steps.goto(fixture_server.url("account")), steps.text("#who"), timeout=60
        )
        assert fresh[1].text == "signed out"


@ENGINES
async def test_cookie_steps(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: str
) -> None:
    running = await broker_for(broker_factory, engine)
    origin = fixture_server.url("")
    async with lease_on(running, engine) as lease:
        result = await lease.run(
            steps.add_cookies(
                Cookie(name="a", value="1", url=origin),
                Cookie(name="b", value="2", domain="127.0.0.1", path="/", same_site="Lax"),
            ),
            steps.goto(fixture_server.url("form.html")),
            steps.evaluate("document.cookie"),
            steps.get_cookies(origin),
            steps.clear_cookies(),
            steps.get_cookies(),
            timeout=60,
        )
        result.raise_for_failure()
        assert sorted(result[2].value.split("; ")) == ["a=1", "b=2"]
        assert sorted(c["name"] for c in result[3].value) == ["a", "b"]
        assert result[5].value == []


@ENGINES
async def test_console_errors_and_page_errors_are_reported_with_the_step(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: str
) -> None:
    running = await broker_for(broker_factory, engine)
    seen: list[StepOutcome] = []

    class Watcher(LeaseObserver):
        def step_finished(self, lease: Lease, outcome: StepOutcome) -> None:
            seen.append(outcome)

    running.broker.observers.add(Watcher())
    async with lease_on(running, engine) as lease:
        result = await lease.run(
            steps.goto(fixture_server.url("form.html")),
            steps.evaluate("console.error('broken: ' + 42); console.log('chatter'); 1"),
            steps.evaluate("setTimeout(() => { throw new Error('uncaught boom'); }); 1"),
            steps.wait_for_function("new Promise(r => setTimeout(() => r(true), 200))"),
            timeout=30,
        )
        result.raise_for_failure()
    kinds = [(e.kind, e.text, e.page_id) for o in seen for e in o.page_events]
    assert ("console.error", "broken: 42", "p1") in kinds
    assert any(kind == "page.error" and "uncaught boom" in text for kind, text, _ in kinds)
    assert not any("chatter" in text for _, text, _ in kinds)  # plain logs are not kept
    # The client sees them in the step results too.
    reported = [(e.kind, e.text, e.page_id) for r in result for e in r.page_events]
    assert ("console.error", "broken: 42", "p1") in reported


async def test_default_engine_lease_reports_its_page(
    chromium_broker: InProcessBroker, fixture_server: FixtureSite
) -> None:
    async with chromium_broker.client.lease(engine=Engine.DEFAULT) as lease:
        result = await lease.run(steps.goto(fixture_server.url("form.html")), timeout=30)
        assert result[0].page_id == "p1"


@ENGINES
async def test_new_steps_fail_with_documented_kinds(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: str
) -> None:
    running = await broker_for(broker_factory, engine)
    async with lease_on(running, engine) as lease:
        result = await lease.run(
            steps.goto(fixture_server.url("controls.html")),
            steps.hover("#nowhere", timeout_s=1),
            steps.check("#color", timeout_s=1),  # not a checkbox
            steps.select_option("#color", "Purple", timeout_s=1),  # no such option
            steps.set_input_files("#hovered", steps.input_file("a.txt", b"a"), timeout_s=1),
            steps.type_text("#nowhere", "x", timeout_s=1),
            steps.scroll("#nowhere", timeout_s=1),
            steps.within(steps.click("#go", timeout_s=1), frame_selector="#nowhere"),
            steps.close_page("p404"),
            steps.text("#hovered"),  # the lease is fine after all of them
            continue_on_error=True,
            timeout=60,
        )
        kinds = [r.error_kind for r in result]
        assert kinds[0] == "" and kinds[-1] == "" and result[-1].text == "no"
        assert all(kind in ("timeout", "browser", "selector") for kind in kinds[1:-1]), kinds
        assert kinds[1] == kinds[5] == kinds[6] == kinds[7] == "timeout", kinds
        assert kinds[8] == "browser" and "p404" in result[8].error_message

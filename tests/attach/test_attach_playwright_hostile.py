"""A hostile client of a `playwright` lease, with a real broker and browser: what it asks of
Playwright's server that would reach the broker's host, other browsers or around the egress
route is refused by name, and nothing of the host reaches it."""

from __future__ import annotations

import asyncio
import contextlib
import http
from pathlib import Path

import pytest
import websockets
from playwright.async_api import Error as PlaywrightError

from browserbroker import AttachProtocol
from tests.attach.playwright_support import USER_AGENT, patient, raw_playwright
from tests.attach.support import closed_with, playwright
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite
from tests.support import eventually

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MIB = 1024 * 1024
HOST_FILE = "/etc/passwd"
# A 30 MiB file the page makes itself: downloaded at memory speed.
DOWNLOAD = """() => {
  const blob = new Blob([new Uint8Array(30 * 1024 * 1024)]);
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob); a.download = 'big.bin';
  document.body.appendChild(a); a.click();
}"""


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


HOST_WORDS = "root:x:0:0"


def refused(answer: dict[str, object], *words: str) -> None:
    error = answer.get("error")
    assert isinstance(error, dict), answer
    message = error["error"]["message"]
    assert "is refused" in message and all(w in message for w in words), message


async def test_host_files_other_browsers_and_servers_are_refused(
    broker_factory: BrokerFactory,
) -> None:
    broker = await broker_factory()
    lease = await broker.client.acquire(attach=AttachProtocol.PLAYWRIGHT, ttl=120)
    async with raw_playwright(lease.connect_url) as client:
        browser = await client.initialize()
        context, page, frame = await client.new_page(browser)
        # Navigations to the host's files and the browser's own pages.
        for url in (f"file://{HOST_FILE}", f"view-source:file://{HOST_FILE}", "chrome://version"):
            refused(await client.call(frame, "goto", {"url": url}), "Frame.goto")
        # A page's own navigation to file: is the browser's to refuse (not a web page's right).
        script = f"location.href = 'file://{HOST_FILE}'; 1"
        no_arg = {"value": {"v": "undefined"}, "handles": []}
        ran = await client.call(frame, "evaluateExpression", {"expression": script, "arg": no_arg})
        assert "result" in ran, ran
        content = await client.call(frame, "content", {})
        assert HOST_WORDS not in str(content)
        # Files named by their path on the broker's host.
        await client.call(frame, "setContent", {"html": "<input id=f type=file>"})
        files = {"selector": "#f", "localPaths": [HOST_FILE]}
        refused(await client.call(frame, "setInputFiles", files), "localPaths")
        folder = {"selector": "#f", "localDirectory": "/etc"}
        refused(await client.call(frame, "setInputFiles", folder), "localDirectory")
        names = {"items": [{"name": "../../escape"}]}
        refused(await client.call(context, "createTempFiles", names), "stays in its folder")
        # Other browsers, servers and raw CDP.
        playwright_guid = client.of_type("Playwright")[0]
        for kind in ("chromium", "firefox"):
            launcher = client.objects[playwright_guid][1][kind]["guid"]
            refused(await client.call(launcher, "launch", {}), "BrowserType.launch")
            over_cdp = {"endpointURL": "http://127.0.0.1:9222"}
            refused(await client.call(launcher, "connectOverCDP", over_cdp), "connectOverCDP")
        refused(await client.call(playwright_guid, "newRequest", {}), "newRequest")
        refused(await client.call(browser, "newBrowserCDPSession", {}), "raw CDP")
        refused(await client.call(context, "newCDPSession", {"page": {"guid": page}}), "raw CDP")
        refused(await client.call(browser, "startServer", {"title": "x"}), "server")
        # Settings that leave the route, and files written on the host.
        proxy = {"proxy": {"server": "http://10.0.0.1:3128"}}
        refused(await client.call(browser, "newContext", proxy), "proxy")
        video = {"recordVideo": {"dir": "/tmp"}}
        refused(await client.call(browser, "newContext", video), "recordVideo")
        tracing = client.objects[context][1]["tracing"]["guid"]
        refused(await client.call(tracing, "tracingStart", {}), "Tracing")
        refused(await client.call(page, "screencastStart", {"record": True}), "record")
        refused(await client.call(page, "noSuchMethod", {}), "allow list")
        refused(await client.call("nobody@1", "close", {}), "no object")
        # Nothing of the host's file reached the client in any message.
        assert HOST_WORDS not in str(client.events)
        # A call without metadata (Playwright's server died on one) and the lease goes on.
        await client.socket.send('{"id": 900, "guid": "", "method": "initialize", "params": {}}')
        assert "result" in await client.call(frame, "title", {})
        # Not a Playwright call at all.
        await client.socket.send('{"id": 1, "guid": "", "method": "x", "params": {"n": 1e400}}')
        code, reason = await closed_with(client.socket)
        assert code == 1007 and "infinity" in reason
    await lease.release()


async def test_python_playwright_sees_each_refusal_by_name(broker_factory: BrokerFactory) -> None:
    broker = await broker_factory()
    lease = await broker.client.acquire(attach=AttachProtocol.PLAYWRIGHT, ttl=120)
    async with playwright() as p:
        browser = await p.chromium.connect(lease.connect_url, timeout=30_000)
        with pytest.raises(PlaywrightError, match="proxy: every context goes through"):
            await browser.new_context(proxy={"server": "http://10.0.0.1:3128"})
        with pytest.raises(PlaywrightError, match="raw CDP"):
            await browser.new_browser_cdp_session()
        page = await browser.new_page()
        with pytest.raises(PlaywrightError, match="a navigation to file:"):
            await page.goto(f"file://{HOST_FILE}")
        await browser.close()
    await lease.release()


@pytest.mark.parametrize("engine", ["chromium", "firefox"])
async def test_the_route_is_the_only_way_out(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: str
) -> None:
    """A loopback or private address is not reached, neither by a page nor by the context's
    API requests (Playwright's server fetches them itself, through the context's proxy: the
    route)."""
    from browserbroker import Engine

    broker = patient(
        await broker_factory(
            engines=["chromium", "firefox"], egress_allow_cidrs=[], egress_allow_loopback=False
        )
    )
    lease = await broker.client.acquire(
        attach=AttachProtocol.PLAYWRIGHT, engine=Engine[engine.upper()], ttl=120
    )
    secret = "quarterly report"  # the fixture site's /file.txt
    async with playwright() as p:
        browser_type = p.firefox if engine == "firefox" else p.chromium
        browser = await browser_type.connect(lease.connect_url, timeout=30_000)
        context = await browser.new_context()
        page = await context.new_page()
        for url in (fixture_server.url("file.txt"), "http://10.255.255.1/", "http://[::1]/"):
            try:
                response = await page.goto(url, timeout=15_000)
            except PlaywrightError:
                continue
            assert response is None or response.status >= 400
            assert secret not in await page.content()
        fetched = await context.request.get(fixture_server.url("file.txt"), timeout=15_000)
        text = await fetched.text()
        assert fetched.status == 403 and "egress" in text and secret not in text, text
        await browser.close()
    await lease.release()


async def test_no_upgrade_without_the_right_token_path_or_version(
    broker_factory: BrokerFactory,
) -> None:
    broker = await broker_factory()
    lease = await broker.client.acquire(attach=AttachProtocol.PLAYWRIGHT, ttl=120)
    url = lease.connect_url
    forged = url.rsplit("=", 1)[0] + "=" + "A" * 43
    wrong_path = url.replace("/playwright/", "/cdp/")
    older = {"user_agent_header": "Playwright/1.50.0 (x) node/20"}
    cases = [
        (forged, {}, http.HTTPStatus.UNAUTHORIZED),
        (wrong_path, {}, http.HTTPStatus.NOT_FOUND),
        (url, older, http.HTTPStatus.PRECONDITION_REQUIRED),
    ]
    for target, extra, status in cases:
        kwargs = {"user_agent_header": USER_AGENT, **extra}
        with pytest.raises(websockets.InvalidStatus) as refusal:
            async with websockets.connect(target, **kwargs):  # type: ignore[arg-type]
                pass
        assert refusal.value.response.status_code == status
    await lease.release()
    with pytest.raises(websockets.InvalidStatus) as stale:
        async with websockets.connect(url, user_agent_header=USER_AGENT):
            pass
    assert stale.value.response.status_code == http.HTTPStatus.NOT_FOUND


async def test_acquire_pairs_the_protocol_with_its_engines(broker_factory: BrokerFactory) -> None:
    from browserbroker import Engine, InvalidArgumentError, Isolation

    broker = await broker_factory()
    cases = [
        ({"isolation": Isolation.CONTEXT}, "isolation", "ISOLATION_BROWSER"),
        ({"engine": Engine.CAMOUFOX, "isolation": Isolation.CONTEXT}, "isolation", "BROWSER"),
    ]
    for kwargs, field, words in cases:
        with pytest.raises(InvalidArgumentError) as refusal:
            await broker.client.acquire(ttl=60, attach="playwright", **kwargs)  # type: ignore[arg-type]
        violations = refusal.value.violations
        assert any(v.field == field and words in v.description for v in violations), violations


async def test_a_download_over_its_bound_is_cancelled_and_removed(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, tmp_path: Path
) -> None:
    from broker.attach.bounds import AttachLimits
    from broker.engines.playwright.serving import ServingEngine

    broker = await broker_factory()
    engine = next(e for e in broker.broker.engines.values() if isinstance(e, ServingEngine))
    assert engine.served is not None
    engine.served.limits = AttachLimits(max_download_bytes=MIB, max_downloads_bytes=4 * MIB)
    lease = await broker.client.acquire(attach=AttachProtocol.PLAYWRIGHT, ttl=120)
    served = next(iter(engine.served._served.values()))
    folder = served.folders[0]  # the browser's downloads folder
    async with playwright() as p:
        browser = await p.chromium.connect(lease.connect_url, timeout=30_000)
        page = await browser.new_page()
        await page.goto(fixture_server.url("download.html"))
        async with page.expect_download() as small:
            await page.click("#file")
        assert await (await small.value).failure() is None
        async with page.expect_download() as big:
            await page.evaluate(DOWNLOAD)
        download = await big.value
        await download.failure()  # the download has ended, one way or the other
        # Cancelled, or completed and then removed: the folder is measured every 0.25 s.
        await eventually(lambda: folder_bytes(folder) <= MIB, 30)
        saved = tmp_path / "big.bin"
        with contextlib.suppress(PlaywrightError):  # nothing of it is left to read
            await download.save_as(saved)
        assert not saved.exists() or saved.stat().st_size <= MIB
        await browser.close()
    await lease.release()


async def test_new_pages_are_bounded(broker_factory: BrokerFactory) -> None:
    from broker.attach.bounds import AttachLimits
    from broker.engines.playwright.serving import ServingEngine

    broker = await broker_factory()
    engine = next(e for e in broker.broker.engines.values() if isinstance(e, ServingEngine))
    assert engine.served is not None
    engine.served.limits = AttachLimits(max_targets=2)
    lease = await broker.client.acquire(attach=AttachProtocol.PLAYWRIGHT, ttl=120)
    async with raw_playwright(lease.connect_url) as client:
        browser = await client.initialize()
        context, page, _ = await client.new_page(browser)
        assert "result" in await client.call(context, "newPage", {})
        refused(await client.call(context, "newPage", {}), "2 pages are open")
        assert "error" not in await client.call(page, "close", {})
        # Its slot frees when its disposal comes, after the answer (later on a loaded machine).
        for _ in range(600):
            opened = await client.call(context, "newPage", {})
            if "result" in opened:
                break
            refused(opened, "2 pages are open")
            await asyncio.sleep(0.1)
        assert "result" in opened, opened
    await lease.release()


async def test_a_message_from_the_browser_over_its_bound_closes_the_socket(
    broker_factory: BrokerFactory,
) -> None:
    from broker.attach.bounds import AttachLimits
    from broker.engines.playwright.serving import ServingEngine

    broker = await broker_factory()
    engine = next(e for e in broker.broker.engines.values() if isinstance(e, ServingEngine))
    assert engine.served is not None
    engine.served.limits = AttachLimits(max_browser_message_bytes=MIB)
    lease = await broker.client.acquire(attach=AttachProtocol.PLAYWRIGHT, ttl=120)
    async with raw_playwright(lease.connect_url) as client:
        browser = await client.initialize()
        _, _, frame = await client.new_page(browser)
        small = {
            "expression": "'x'.repeat(1000)",
            "arg": {"value": {"v": "undefined"}, "handles": []},
        }
        assert "result" in await client.call(frame, "evaluateExpression", small)
        big = {
            "expression": "'x'.repeat(2 * 1024 * 1024)",
            "arg": {"value": {"v": "undefined"}, "handles": []},
        }
        with contextlib.suppress(websockets.ConnectionClosed):
            await client.call(frame, "evaluateExpression", big)
        code, reason = await closed_with(client.socket)
        assert code == 1011 and f"over {MIB}" in reason, (code, reason)
    # The lease and its browser go on: another client is served.
    async with raw_playwright(lease.connect_url) as again:
        await again.initialize()
    await lease.release()

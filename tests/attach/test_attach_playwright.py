"""Attached clients over Playwright's own protocol, against a real broker and a real browser:
Python Playwright's `browser_type.connect` signs in on the fixture site, scrapes, completes a
popup and downloads a file; a Run works on the same lease; the lease's end closes the socket
with its reason and leaves no browser behind."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import Browser, Playwright
from playwright.async_api import Error as PlaywrightError

from browserbroker import AttachProtocol, Engine, steps
from tests.attach.playwright_support import no_browser_left, patient, raw_playwright
from tests.attach.support import closed_with, playwright, sign_in_and_approve_a_popup
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPORT = b"quarterly report\n"  # the fixture site's /file.txt


async def connect(p: Playwright, url: str, engine: str = "chromium") -> Browser:
    browser_type = p.firefox if engine == "firefox" else p.chromium
    return await browser_type.connect(url, timeout=30_000)


async def sign_in_scrape_popup_download(browser: Browser, site: FixtureSite, saved: Path) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in_and_approve_a_popup(page, site)
    await page.goto(site.url("download.html"))
    async with page.expect_download() as download_info:
        await page.click("#file")
    download = await download_info.value
    assert download.suggested_filename == "report.txt"
    assert await download.failure() is None
    # A remote client gets the file over the protocol (Artifact.saveAsStream), on its side.
    await download.save_as(saved / "report.txt")
    assert (saved / "report.txt").read_bytes() == REPORT
    # A file of the client's is streamed to the broker's host, where the (jailed) browser
    # reads it.
    await page.goto(site.url("upload.html"))
    (saved / "notes.txt").write_text("from the client")
    await page.set_input_files("#file", saved / "notes.txt")
    files = await page.evaluate("window.files()")
    assert [(f["name"], f["text"]) for f in files] == [("notes.txt", "from the client")]


@pytest.mark.parametrize("engine", ["chromium", "firefox"])
async def test_connect_signs_in_scrapes_and_a_run_shares_the_lease(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: str, tmp_path: Path
) -> None:
    broker = patient(await broker_factory(engines=["chromium", "firefox"]))
    async with broker.client.lease(
        attach="playwright", engine=Engine[engine.upper()], ttl=120
    ) as lease:
        assert lease.connect_url.startswith("ws://127.0.0.1:")
        assert "/playwright/" in lease.connect_url
        async with playwright() as p:
            browser = await connect(p, lease.connect_url, engine)
            await sign_in_scrape_popup_download(browser, fixture_server, tmp_path)
            # The broker's own Runs drive the same browser at the same time.
            result = await lease.run(
                steps.goto(fixture_server.url("form.html")), steps.text("h1"), timeout=30
            )
            result.raise_for_failure()
            # The client sees only the contexts it opened, not the lease's own.
            assert len(browser.contexts) == 1
            await browser.close()  # disconnects; the lease lives on (ON_DISCONNECT_KEEP)
        again = await lease.run(steps.evaluate("1 + 1"), timeout=30)
        again.raise_for_failure()
        assert again[0].value == 2


@pytest.mark.parametrize(
    ("ending", "engine"), [("release", "chromium"), ("ttl", "chromium"), ("release", "firefox")]
)
async def test_the_lease_ending_closes_the_socket_and_the_browser(
    broker_factory: BrokerFactory, ending: str, engine: str
) -> None:
    broker = patient(await broker_factory(engines=["chromium", "firefox"]))
    ttl = 20.0 if ending == "ttl" else 60.0  # the TTL outlasts the setup under load
    lease = await broker.client.acquire(
        attach=AttachProtocol.PLAYWRIGHT, engine=Engine[engine.upper()], ttl=ttl
    )
    expected = {
        "release": (4001, "lease ended: client_release"),
        "ttl": (4002, "lease ended: ttl_expired"),
    }[ending]
    async with playwright() as p, raw_playwright(lease.connect_url) as watcher:
        await watcher.initialize()  # a second client, speaking the protocol itself
        browser = await connect(p, lease.connect_url, engine)
        page = await browser.new_page()
        await page.goto("data:text/html,<h1>attached</h1>")
        closed = asyncio.get_running_loop().create_future()
        browser.on("disconnected", lambda _: closed.set_result(None))
        if ending == "release":
            await lease.release()
        assert await closed_with(watcher.socket) == expected
        await asyncio.wait_for(closed, 30)
        with pytest.raises(PlaywrightError):
            await page.title()
    await broker.broker.leases.wait_all_closed()
    await no_browser_left()

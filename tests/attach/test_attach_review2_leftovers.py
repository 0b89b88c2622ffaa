"""Second review of what a `playwright` attachable lease's browser leaves on the broker's host
after its lease ends: the profile folder Playwright's launchServer made for it (cookies,
storage, cache and history of the tenant's pages) must not outlive the browser, as nothing of a
lease may (docs/security.md)."""

from __future__ import annotations

import asyncio
import os
import shutil

import psutil
import pytest

from browserbroker import AttachProtocol, Engine
from tests.attach.playwright_support import no_browser_left, patient
from tests.attach.support import playwright
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite
from tests.support import in_process_browsers

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _profile_folders() -> set[str]:
    """The profile folders the browsers below this process were started with."""
    found: set[str] = set()
    for proc in in_process_browsers():
        try:
            args = proc.cmdline()
        except psutil.Error:
            continue
        for i, arg in enumerate(args):
            if arg.startswith("--user-data-dir="):
                found.add(arg.split("=", 1)[1])
            elif arg in ("-profile", "--profile") and i + 1 < len(args):
                found.add(args[i + 1])
    return found


def _existing(folders: set[str]) -> set[str]:
    return {f for f in folders if os.path.exists(f)}


@pytest.mark.parametrize("engine", ["chromium", "firefox"])
async def test_review2_a_served_browsers_profile_is_removed_with_its_lease(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: str
) -> None:
    running = patient(await broker_factory(engines=["chromium", "firefox"]))
    lease = await running.client.acquire(
        attach=AttachProtocol.PLAYWRIGHT, engine=Engine[engine.upper()], ttl=120
    )
    try:
        async with playwright() as p:
            browser_type = p.firefox if engine == "firefox" else p.chromium
            browser = await browser_type.connect(lease.connect_url, timeout=30_000)
            page = await browser.new_page()
            await page.goto(fixture_server.url("form.html"))  # the tenant's history, cache
            profiles = {f for f in _profile_folders() if "playwright" in os.path.basename(f)}
            assert profiles, _profile_folders()
            await browser.close()
    finally:
        await lease.release()
    await no_browser_left()
    for _ in range(50):
        left = _existing(profiles)
        if not left:
            break
        await asyncio.sleep(0.1)
    for folder in left:  # (the test's own leftovers, not to pile up on the host)
        shutil.rmtree(folder, ignore_errors=True)
    assert not left, f"profile folders left on the host: {sorted(left)}"

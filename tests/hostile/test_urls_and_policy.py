"""A hostile tenant spells a URL the way the browser reads it and the broker did not.

Every URL a step names is judged in the form the browser will use (broker/common/urls.py, the
WHATWG parser): leading C0 controls and spaces, tabs and newlines anywhere, backslashes and odd
IP spellings change nothing. A `file:` URL or a browser-internal page is refused at the edge with
INVALID_ARGUMENT naming the field, on Chromium and Firefox, and nothing of the host is read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from browserbroker import AsyncLease, InvalidArgumentError, steps
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite
from tests.integration.test_engines import SDK_ENGINE, start

pytestmark = pytest.mark.browser

ENGINES = pytest.mark.parametrize("engine", ["chromium", "firefox"])

FILE_SPELLINGS = [
    " file:///etc/hostname",
    "\tfile:///etc/hostname",
    "\x01\x1f file:///etc/hostname",
    "fi\nle:///etc/hostname",
    "f\ti\rle:///etc/hostname",
    "FILE:///etc/hostname",
    "file:/etc/hostname",
    "file:\\\\\\etc\\hostname",
    "file://localhost/etc/hostname",
    "file:///etc/hostname\n ",
]
DIRECTORY_SPELLINGS = [" file:///etc/", "\nfile:///etc/"]
INTERNAL_PAGES = [
    "view-source:http://127.0.0.1/",
    " view-source:file:///etc/hostname",
    "chrome://version",
    "chrome://settings",
    "about:config",
    "about:support",
    "about:version",
    "\tabout:about",
    "about:blank/../config",
    "about:srcdoc",
    "blob:http://127.0.0.1/x",
    "javascript:alert(1)",
    "resource://gre/modules/",
    "moz-extension://x/",
    "jar:file:///etc/hostname!/",
    "filesystem:http://127.0.0.1/temporary/x",
]


@pytest.fixture
def secret() -> bytes:
    """A file every user of the host may read, as a download would return it."""
    return Path("/etc/ld.so.cache").read_bytes()


async def _refused(lease: AsyncLease, url: str) -> None:
    """The goto is refused before any step runs, naming the field; nothing comes back."""
    try:
        result = await lease.run(steps.goto(url), steps.content(), timeout=30)
    except InvalidArgumentError as refused:
        fields = [v.field for v in refused.violations]
        assert fields == ["steps[0].goto.url"], (url, fields)
        return
    content = result[1].text if len(result) > 1 else ""
    pytest.fail(f"{url!r} was navigated: ok={result[0].ok}, content {content[:200]!r}")


@ENGINES
async def test_file_urls_in_every_spelling_are_refused(
    broker_factory: BrokerFactory, engine: str
) -> None:
    running = await start(broker_factory, engine)
    async with running.client.lease(engine=SDK_ENGINE[engine], ttl=120) as lease:
        for url in FILE_SPELLINGS + DIRECTORY_SPELLINGS:
            await _refused(lease, url)
        # The lease is still usable after the refusals.
        ok = await lease.run(steps.goto("about:blank"), timeout=30)
        assert ok.ok


@ENGINES
async def test_internal_pages_are_refused(broker_factory: BrokerFactory, engine: str) -> None:
    running = await start(broker_factory, engine)
    async with running.client.lease(engine=SDK_ENGINE[engine], ttl=120) as lease:
        for url in INTERNAL_PAGES:
            await _refused(lease, url)
        for url in ("about:blank", " about:blank", "ABOUT:blank#x"):
            result = await lease.run(steps.goto(url), timeout=30)
            assert result.ok, (url, result[0])


@ENGINES
async def test_download_of_a_file_link_reads_nothing(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, secret: bytes, engine: str
) -> None:
    """A page's link to a file: URL, clicked by a download step: no byte of the file returns.
    (Before: from a file: listing page on both engines, and from a data: page on Firefox, the
    step returned /etc/ld.so.cache byte for byte.)"""
    running = await start(broker_factory, engine)
    link = "<a id=x download href='file:///etc/ld.so.cache'>x</a>"
    async with running.client.lease(engine=SDK_ENGINE[engine], ttl=120) as lease:
        # The listing route: a file: directory page, then a link in it.
        for url in DIRECTORY_SPELLINGS:
            await _refused(lease, url)
        for page in ("data:text/html,<p>hi</p>", fixture_server.url("form.html")):
            await lease.run(steps.goto(page), timeout=30)
            injected = f"document.body.insertAdjacentHTML('beforeend', {link!r})"
            await lease.run(steps.evaluate(injected), timeout=30)
            result = (await lease.run(steps.download("#x", timeout_s=5), timeout=30))[0]
            assert not result.ok and result.error_kind in {"blocked", "timeout"}, result
            assert secret[:64] not in result.data and result.data == b""

"""The broker's own download step on an attachable lease: the browser (jailed, as the browser
user) writes the file into a folder of its own profile, the one the jail binds, and the step's
bound holds while the file is written, as on any other lease. A traced lease keeps Playwright's
own artifacts folder (a trace's files are no business of the browser's user), and its trace."""

from __future__ import annotations

import io
import zipfile

import pytest

from browserbroker import ContextOptions, steps
from tests.attach.support import connect, playwright
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def test_a_download_step_on_an_attachable_lease(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    running = await broker_factory(max_download_bytes=32 * 1024)
    async with running.client.lease(attach="cdp", ttl=120) as lease:
        result = await lease.run(
            steps.goto(fixture_server.url("download.html")),
            steps.download("#file"),
            timeout=60,
        )
        result.raise_for_failure()
        assert result[1].data == b"quarterly report\n" and result[1].text == "report.txt"
        # 64 KiB against the 32 KiB bound; then a small one again.
        bounded = await lease.run(
            steps.download("#big"), steps.download("#file"), continue_on_error=True, timeout=60
        )
        # Stopped either by the step's own measure (too_large, naming the size) or, first, by the
        # lease's hub, which bounds every download in the browser to max_download_bytes too and
        # cancels it (the step then fails on the cancelled download). No byte of it comes back.
        too_large, kind, message = bounded[0], bounded[0].error_kind, bounded[0].error_message
        assert not too_large.ok and not too_large.data
        assert (kind, "65536 bytes" in message) == ("too_large", True) or (
            kind == "browser" and "canceled" in message
        ), (kind, message)
        assert bounded[1].ok and bounded[1].data == b"quarterly report\n"
        # An attached client is connected meanwhile: the step still works beside it.
        async with playwright() as p:
            browser = await connect(p, lease.connect_url)
            again = await lease.run(steps.download("#file"), timeout=60)
            again.raise_for_failure()
            assert again[0].data == b"quarterly report\n"
            await browser.close()


async def test_a_traced_attachable_lease_keeps_its_trace(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    """A traced lease's artifacts stay in Playwright's own folder, outside the browser's reach."""
    running = await broker_factory()
    traced = ContextOptions(trace=True)
    async with running.client.lease(attach="cdp", ttl=120, context=traced) as lease:
        result = await lease.run(steps.goto(fixture_server.url("form.html")), timeout=60)
        result.raise_for_failure()
    with zipfile.ZipFile(io.BytesIO(await lease.trace())) as archive:
        assert any(name.endswith(".trace") for name in archive.namelist())

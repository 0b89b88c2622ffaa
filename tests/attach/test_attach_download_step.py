"""The broker's own download step on an attachable lease: the browser (jailed, as the browser
user) writes the file into a folder of its own profile, the one the jail binds, and the step's
bound holds while the file is written, as on any other lease."""

from __future__ import annotations

import pytest

from browserbroker import steps
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
        assert bounded[0].error_kind == "too_large" and not bounded[0].data
        assert "65536 bytes" in bounded[0].error_message
        assert bounded[1].ok and bounded[1].data == b"quarterly report\n"
        # An attached client is connected meanwhile: the step still works beside it.
        async with playwright() as p:
            browser = await connect(p, lease.connect_url)
            again = await lease.run(steps.download("#file"), timeout=60)
            again.raise_for_failure()
            assert again[0].data == b"quarterly report\n"
            await browser.close()

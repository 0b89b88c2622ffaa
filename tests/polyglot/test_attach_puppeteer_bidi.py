"""Puppeteer over WebDriver BiDi (`protocol: 'webDriverBiDi'`) attached to an attach-only
Firefox lease of a real broker (a subprocess) and a stock Firefox: it signs in on the fixture
site, scrapes, completes an OAuth popup and downloads a file (examples/attach/node/
puppeteer_bidi.js). Puppeteer's BiDi API has no download events or saving; the file is written
in the lease's folder on the broker's host, which this test reads, and the client hears the
browser's own download events with the host path taken out. A file: navigation is refused
naming the command. Then Release closes the socket with the lease-ended close code, and no
browser or profile of the lease is left; a Run on the lease is refused naming why.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from browserbroker import AsyncBrokerClient, Engine, FailedPreconditionError, steps
from tests.fixture_site import FixtureSite
from tests.support import BrokerProcess, command_line

from .polyglot_helpers import ROOT, missing, need_tool
from .test_attach_clients import (
    REPORT,
    nothing_is_left,
    release_closes_the_socket,
    scenario_reported,
    start_client,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NODE_DIR = ROOT / "examples/attach/node"
PROFILE_PREFIX = "playwright_attach_firefox-"  # broker/engines/playwright/attachable_firefox.py


@pytest.fixture(scope="module")
def firefox_broker() -> Iterator[BrokerProcess]:
    broker = BrokerProcess(
        env={"BROKER_WARM_POOL_SIZE": "0", "BROKER_ENGINES": '["chromium", "firefox"]'}
    ).start()
    yield broker
    broker.stop()


def lease_profile(broker: BrokerProcess) -> Path:
    """The profile folder of the one attach-only Firefox below the broker (its --profile)."""
    folders = set()
    for proc in broker.browsers():
        args = command_line(proc)
        for flag, value in itertools.pairwise(args):
            if flag == "--profile" and PROFILE_PREFIX in value:
                folders.add(Path(value))
    assert len(folders) == 1, folders
    return folders.pop()


async def test_puppeteer_over_bidi_runs_the_scenario_and_release_closes_its_socket(
    firefox_broker: BrokerProcess, fixture_server: FixtureSite
) -> None:
    node = need_tool("node")
    if not (NODE_DIR / "node_modules" / "puppeteer-core").is_dir():
        missing(f"{NODE_DIR}/node_modules/puppeteer-core is missing: run scripts/polyglot.sh")
    async with AsyncBrokerClient(firefox_broker.address) as broker:
        lease = await broker.acquire(engine=Engine.FIREFOX, attach="bidi", ttl=300)
        with pytest.raises(FailedPreconditionError) as refused:
            await lease.run(steps.evaluate("1"), timeout=30)
        assert "attach-only" in str(refused.value)
        client = await start_client(
            [node, str(NODE_DIR / "puppeteer_bidi.js")], lease.connect_url, fixture_server
        )
        proc = client.proc
        try:
            seen = await client.until("ready")
            profile = lease_profile(firefox_broker)
            scenario_reported(seen, fixture_server)
            download = seen["download"]
            assert download["state"] == "complete"
            assert download["filepath"] is None  # a path on the broker's host is not shown
            files = {p.name: p.read_bytes() for p in (profile / "downloads").iterdir()}
            assert files == {"report.txt": REPORT}, files
            message = seen["refused"]["message"]
            assert "browsingContext.navigate is refused: a file: URL" in message, message

            await release_closes_the_socket(lease, client)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await lease.release()
        await nothing_is_left(broker, firefox_broker, profile)

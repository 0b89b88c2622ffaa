"""A broker stopped with SIGTERM (a real subprocess) ends its attachable leases through the one
release path: the client's socket closes with the lease's reason and no browser is left."""

from __future__ import annotations

import asyncio
import signal

import pytest

from browserbroker import AsyncBrokerClient
from tests.attach.support import closed_with, raw
from tests.support import BrokerProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.mark.parametrize(
    ("drain_s", "expected"),
    [("0", (4007, "lease ended: shutdown")), ("1", (4011, "lease ended: drained"))],
)
async def test_sigterm_closes_the_socket_with_the_reason(
    drain_s: str, expected: tuple[int, str]
) -> None:
    broker = BrokerProcess(env={"BROKER_DRAIN_TIMEOUT_S": drain_s}).start()
    try:
        async with AsyncBrokerClient(broker.address) as client:
            lease = await client.acquire(attach="cdp", ttl=120)
            async with raw(lease.connect_url) as attached:
                await attached.call("Browser.getVersion")
                browsers = broker.browsers()
                assert browsers, "the lease's browser runs below the broker"
                broker.signal(signal.SIGTERM)
                assert await closed_with(attached.socket) == expected
        assert await asyncio.to_thread(broker.wait, 60) == 0, broker.log()
        # (the browsers' own pids: a browser that escaped the broker would not be below it)
        assert not [p.pid for p in browsers if p.is_running() and p.status() != "zombie"]
    finally:
        broker.stop()

"""A broker stopped with SIGTERM (a real subprocess) ends its attachable leases through the one
release path: the client's socket closes with the lease's reason and no browser is left. A
draining broker takes no new connections."""

from __future__ import annotations

import asyncio
import signal

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from browserbroker import AsyncBrokerClient
from tests.attach.support import closed_with, raw
from tests.conftest import BrokerFactory
from tests.support import BrokerProcess, eventually

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


async def test_a_draining_broker_takes_no_new_connections(broker_factory: BrokerFactory) -> None:
    """Once the broker drains, a new connection gets HTTP 503 before any upgrade, even with a
    valid URL; the client already connected goes on until its lease ends."""
    broker = await broker_factory(drain_timeout_s=60)
    lease = await broker.client.acquire(attach="cdp", ttl=120)
    async with raw(lease.connect_url) as attached:
        await attached.call("Browser.getVersion")
        broker.stop.set()  # the daemon drains: health first, then the leases
        await eventually(lambda: broker.broker.leases.draining, 30)
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(lease.connect_url):
                pass
        assert refused.value.response.status_code == 503
        assert b"draining" in refused.value.response.body
        assert "result" in await attached.call("Browser.getVersion")  # still served
        await lease.release()
        assert await closed_with(attached.socket) == (4001, "lease ended: client_release")
    await asyncio.wait_for(broker.task, 60)  # the drain ends with its last lease

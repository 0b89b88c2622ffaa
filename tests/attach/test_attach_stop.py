"""Ending a lease stops the work an attached client started, seen from the browser's side as the
cancellation tests see it: the client's page keeps pinging the fixture site (a timer loop, a
script that never yields, a navigation that keeps streaming, a popup pinging on a timer), the
lease ends by Release or by its TTL, and the pings stop within STOP_BOUND_S of the end while
the client's socket is closed with the reason."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from urllib.parse import quote

import pytest

from browserbroker import AsyncLease
from tests.attach.support import RawClient, closed_with, raw
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite
from tests.support import STOP_BOUND_S, eventually, last_ping_after

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Long enough for a page to open and start pinging on a loaded machine before the TTL passes.
TTL_S = 6.0
KINDS = ("timer_loop", "slow_script", "navigation", "popup")


async def _start(client: RawClient, site: FixtureSite, kind: str, ping_id: str) -> None:
    """The client opens a page doing `kind` work (and does not wait for a script that never
    returns: its answer never comes). The page is opened at its URL: a navigation sent at
    once to a page just opened blank can find it still paused for the broker's own client."""
    url = {
        "timer_loop": f"ping-loop.html?id={ping_id}",
        "slow_script": f"ping-script.html?id={ping_id}",
        "navigation": f"slow-stream?id={ping_id}",
        "popup": "popup?src=" + quote(f"/ping-loop.html?id={ping_id}"),
    }[kind]
    created = await client.call("Target.createTarget", {"url": site.url(url)})
    target = created["result"]["targetId"]
    attached = await client.call("Target.attachToTarget", {"targetId": target, "flatten": True})
    session = attached["result"]["sessionId"]
    if kind == "slow_script":
        defined = {"expression": "typeof spin", "returnByValue": True}
        for _ in range(300):  # the target is answered before its page has run its script
            answer = await client.call("Runtime.evaluate", defined, session)
            if answer.get("result", {}).get("result", {}).get("value") == "function":
                break
            await asyncio.sleep(0.1)
        spin = {"expression": "spin()"}
        message = {"id": 10_000, "method": "Runtime.evaluate", "params": spin, "sessionId": session}
        await client.socket.send(json.dumps(message))


@pytest.mark.parametrize("ending", ["release", "ttl"])
@pytest.mark.parametrize("kind", KINDS)
async def test_the_leases_end_stops_the_clients_work(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, kind: str, ending: str
) -> None:
    broker = await broker_factory()
    ttl = TTL_S if ending == "ttl" else 120.0
    lease = await broker.client.acquire(attach="cdp", ttl=ttl)
    expires_at = broker.broker.leases.get(lease.id, lease.grant.token).expires_at
    ping_id = uuid.uuid4().hex
    async with raw(lease.connect_url) as client:
        await _start(client, fixture_server, kind, ping_id)
        await end_and_see_it_stop(lease, expires_at, client, fixture_server, ping_id, ending)


async def end_and_see_it_stop(
    lease: AsyncLease,
    expires_at: float,
    client: RawClient,
    site: FixtureSite,
    ping_id: str,
    ending: str,
) -> None:
    """Once the client's page pings, end the lease (`release` or its `ttl`): the socket closes
    with the reason, and the pings stop within STOP_BOUND_S of the end."""
    await eventually(lambda: len(site.pings.times(ping_id)) >= 3, 30)
    if ending == "release":
        ended_at = time.monotonic()
        await lease.release()
        expected = (4001, "lease ended: client_release")
    else:
        assert time.monotonic() < expires_at, "the work began after the TTL: raise TTL_S"
        ended_at = expires_at
        expected = (4002, "lease ended: ttl_expired")
    assert await closed_with(client.socket) == expected
    last = await asyncio.wait_for(last_ping_after(site, ping_id), 30)
    assert last - ended_at < STOP_BOUND_S, f"pings went on {last - ended_at:.2f}s"

"""Ending an attach-only Firefox lease stops the work its BiDi client started, seen from the
browser's side as the CDP stop tests see it: the client's page keeps pinging the fixture site
(a timer loop, a script that never yields, a popup pinging on a timer), the lease ends by
Release or by its TTL, and the pings stop within STOP_BOUND_S of the end (the browser's process
group is killed) while the socket is closed with the reason."""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import pytest

from tests.attach.bidi_support import bidi_lease, firefox_broker, first_context
from tests.attach.support import RawClient, raw
from tests.attach.test_attach_stop import end_and_see_it_stop
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TTL_S = 8.0  # long enough for a page to open and start pinging on a loaded machine
KINDS = ("timer_loop", "slow_script", "popup")


async def _start(client: RawClient, site: FixtureSite, kind: str, ping_id: str) -> None:
    url = {
        "timer_loop": f"ping-loop.html?id={ping_id}",
        "slow_script": f"ping-script.html?id={ping_id}",
        "popup": "popup?src=" + quote(f"/ping-loop.html?id={ping_id}"),
    }[kind]
    context = await first_context(client)
    went = await client.call(
        "browsingContext.navigate", {"context": context, "url": site.url(url), "wait": "complete"}
    )
    assert went["type"] == "success", went
    if kind == "slow_script":  # its answer never comes: not waited for
        spin = {"expression": "spin()", "target": {"context": context}, "awaitPromise": False}
        message = {"id": 10_000, "method": "script.evaluate", "params": spin}
        await client.socket.send(json.dumps(message))


@pytest.mark.parametrize("ending", ["release", "ttl"])
@pytest.mark.parametrize("kind", KINDS)
async def test_the_leases_end_stops_the_clients_work(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, kind: str, ending: str
) -> None:
    broker = await firefox_broker(broker_factory)
    lease = await bidi_lease(broker, ttl=TTL_S if ending == "ttl" else 120.0)
    expires_at = broker.broker.leases.get(lease.id, lease.grant.token).expires_at
    ping_id = uuid.uuid4().hex
    async with raw(lease.connect_url) as client:
        await _start(client, fixture_server, kind, ping_id)
        await end_and_see_it_stop(lease, expires_at, client, fixture_server, ping_id, ending)

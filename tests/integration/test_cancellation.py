"""Deadlines and cancels stop the work in the browser, seen from the browser's side.

Each fixture page keeps pinging the local fixture server (a timer loop, a navigation that keeps
streaming, a script that never returns). A Run on it gets a short deadline; the pings must stop
within STOP_BOUND_S of the deadline, and the lease must be left as its on_cancel policy says.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
import pytest

from browserbroker import DeadlineExceededError, OnCancel, steps
from browserbroker.v1 import broker_pb2 as pb
from tests.fixture_site import FixtureSite
from tests.support import (
    ROUTE_MODES,
    STOP_BOUND_S,
    STOP_DEADLINE_S,
    STOP_KINDS,
    InProcessBroker,
    eventually,
    last_ping_after,
    unhold_routes,
    work_for,
)

pytestmark = pytest.mark.browser

DEADLINE_S = STOP_DEADLINE_S


async def stop_latency(
    running: InProcessBroker,
    site: FixtureSite,
    kind: str,
    on_cancel: OnCancel,
    sent: bool = False,
) -> tuple[float, str, str]:
    """Runs `kind` work with a short deadline; returns (stop latency, lease id, token). The
    latency is the last ping's arrival after the deadline; with `sent`, its send time."""
    lease = await running.client.acquire()
    ping_id = uuid.uuid4().hex
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        await lease.run(*work_for(kind, site, ping_id), timeout=DEADLINE_S, on_cancel=on_cancel)
    deadline = started + DEADLINE_S
    assert site.pings.times(ping_id), "the page never pinged: the fixture did not run"
    last = await asyncio.wait_for(last_ping_after(site, ping_id, sent=sent), 30)
    return last - deadline, lease.id, lease.grant.token


@pytest.mark.parametrize("route", ROUTE_MODES)
@pytest.mark.parametrize("kind", STOP_KINDS)
async def test_deadline_stops_browser_work_and_keeps_lease(
    chromium_broker: InProcessBroker,
    fixture_server: FixtureSite,
    kind: str,
    route: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if route == "unheld":
        unhold_routes(monkeypatch)
    latency, lease_id, token = await stop_latency(
        chromium_broker, fixture_server, kind, OnCancel.KEEP_LEASE, sent=route == "unheld"
    )
    assert latency < STOP_BOUND_S, f"{kind}: pings went on {latency:.3f}s after the deadline"
    lease = chromium_broker.broker.leases.get(lease_id, token)  # still lent, fresh page
    assert lease.released is None
    again = chromium_broker.client.stub.Run(
        pb.RunRequest(lease_id=lease_id, token=token, steps=[steps.evaluate("location.href")])
    )
    (first,) = [message async for message in again]
    assert first.step.json == '"about:blank"'
    await chromium_broker.client.stub.Release(pb.ReleaseRequest(lease_id=lease_id, token=token))


@pytest.mark.parametrize("kind", STOP_KINDS)
async def test_deadline_with_release_policy_stops_work_and_ends_lease(
    chromium_broker: InProcessBroker, fixture_server: FixtureSite, kind: str
) -> None:
    latency, lease_id, token = await stop_latency(
        chromium_broker, fixture_server, kind, OnCancel.RELEASE_LEASE
    )
    assert latency < STOP_BOUND_S
    released = await chromium_broker.client.stub.Release(
        pb.ReleaseRequest(lease_id=lease_id, token=token)
    )
    assert not released.released_now
    assert released.reason == pb.RELEASE_REASON_RUN_CANCELLED


async def test_client_cancel_stops_browser_work(
    chromium_broker: InProcessBroker, fixture_server: FixtureSite
) -> None:
    lease = await chromium_broker.client.acquire()
    ping_id = uuid.uuid4().hex
    call = chromium_broker.client.stub.Run(
        pb.RunRequest(
            lease_id=lease.id,
            token=lease.grant.token,
            steps=work_for("timer_loop", fixture_server, ping_id),
        ),
        timeout=60,
    )
    reader = asyncio.ensure_future(call.read())
    await eventually(lambda: len(fixture_server.pings.times(ping_id)) >= 5)
    cancelled_at = time.monotonic()
    call.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    assert await call.code() == grpc.StatusCode.CANCELLED
    last = await asyncio.wait_for(last_ping_after(fixture_server, ping_id), 30)
    assert last - cancelled_at < STOP_BOUND_S
    result = await lease.run(steps.evaluate("1 + 1"), timeout=10)
    assert result[0].value == 2  # default policy: the lease lives on with a fresh page
    await lease.release()


async def test_client_disconnect_mid_run_stops_work(
    chromium_broker: InProcessBroker, fixture_server: FixtureSite
) -> None:
    lease = await chromium_broker.client.acquire()
    ping_id = uuid.uuid4().hex
    channel = grpc.aio.insecure_channel(chromium_broker.address)
    from browserbroker.v1 import broker_pb2_grpc

    stub = broker_pb2_grpc.BrowserBrokerServiceStub(channel)
    call = stub.Run(
        pb.RunRequest(
            lease_id=lease.id,
            token=lease.grant.token,
            steps=work_for("timer_loop", fixture_server, ping_id),
            on_cancel=pb.ON_CANCEL_RELEASE_LEASE,
        )
    )
    reader = asyncio.ensure_future(call.read())
    await eventually(lambda: len(fixture_server.pings.times(ping_id)) >= 5)
    closed_at = time.monotonic()
    await channel.close(grace=None)  # the whole connection goes away mid-Run
    await asyncio.gather(reader, return_exceptions=True)
    last = await asyncio.wait_for(last_ping_after(fixture_server, ping_id), 30)
    assert last - closed_at < STOP_BOUND_S
    outcome = await lease.release()
    assert not outcome.released_now and outcome.reason == "run_cancelled"

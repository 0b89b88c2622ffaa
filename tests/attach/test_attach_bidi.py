"""Attach-only Firefox leases over WebDriver BiDi, against a real broker and a stock Firefox: a
raw BiDi client signs in and scrapes on the fixture site through the lease's session, a Run is
refused naming why, and every ending closes the socket with its reason and leaves no browser."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from broker.model.options import EngineName
from browserbroker import (
    AsyncBrokerClient,
    Engine,
    FailedPreconditionError,
    InvalidArgumentError,
    OnDisconnect,
    steps,
)
from browserbroker.v1 import broker_pb2 as pb
from tests.attach.bidi_support import bidi_lease, firefox_broker, first_context, no_browser_left
from tests.attach.support import closed_with, raw
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite
from tests.support import BrokerProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def test_pairing_and_runs_refused(broker_factory: BrokerFactory) -> None:
    broker = await firefox_broker(broker_factory)
    lease = await bidi_lease(broker, ttl=60)
    assert "/bidi/" in lease.connect_url
    assert lease.grant.isolation.name == "BROWSER"
    with pytest.raises(FailedPreconditionError) as refused:
        await lease.run(steps.evaluate("1"), timeout=30)
    assert "attach-only" in str(refused.value)
    assert "one WebDriver BiDi session" in str(refused.value)
    await lease.release()
    # Chromium serves no BiDi (Puppeteer's chromium-bidi maps BiDi to CDP on the client's
    # side), Camoufox speaks Juggler; the lease's own context options would open nothing.
    for engine, words in ((Engine.CHROMIUM, "CDP"), (Engine.CAMOUFOX, "Juggler")):
        with pytest.raises(InvalidArgumentError) as wrong:
            await broker.client.acquire(engine=engine, attach="bidi", ttl=60)
        fields = {v.field: v.description for v in wrong.value.violations}
        assert "engine" in fields, fields
        assert words in fields["engine"], fields
    with pytest.raises(InvalidArgumentError) as context:
        await bidi_lease(broker, ttl=60, context=pb.ContextOptions(locale="de-DE"))
    assert "context" in {v.field for v in context.value.violations}


async def test_a_client_signs_in_and_scrapes_and_release_closes_its_socket(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    broker = await firefox_broker(broker_factory)
    lease = await bidi_lease(broker, ttl=120)
    census = await broker.broker.engines[EngineName.FIREFOX].census_async(0)
    assert census.browsers == 1, census
    async with raw(lease.connect_url) as client:
        new = await client.call("session.new", {"capabilities": {}})
        assert new["result"]["capabilities"]["browserName"] == "firefox"
        context = await first_context(client)
        login = fixture_server.url("login.html")
        went = await client.call(
            "browsingContext.navigate", {"context": context, "url": login, "wait": "complete"}
        )
        assert went["type"] == "success", went
        script = (
            "document.querySelector('#user').value = 'ada';"
            "document.querySelector('#password').value = 'secret';"
            "document.querySelector('#submit').click()"
        )
        target = {"context": context}
        await client.call(
            "script.evaluate", {"expression": script, "target": target, "awaitPromise": False}
        )
        who = ""
        for _ in range(100):
            answer = await client.call(
                "script.evaluate",
                {
                    "expression": "document.querySelector('#who')?.textContent ?? ''",
                    "target": target,
                    "awaitPromise": False,
                },
            )
            who = answer["result"]["result"].get("value", "")
            if who:
                break
            await asyncio.sleep(0.1)
        assert who == "signed in as ada"
        # One client at a time: the session's events cannot be told apart by subscriber.
        with pytest.raises(InvalidStatus) as second:
            async with websockets.connect(lease.connect_url):
                pass
        assert second.value.response.status_code == 429
        await lease.release()
        assert await closed_with(client.socket) == (4001, "lease ended: client_release")
    await broker.broker.leases.wait_all_closed()
    await no_browser_left()
    census = await broker.broker.engines[EngineName.FIREFOX].census_async(0)
    assert census.browsers == 0, census


@pytest.mark.parametrize("ending", ["ttl", "idle"])
async def test_ttl_and_idle_close_the_socket_with_their_reason(
    broker_factory: BrokerFactory, ending: str
) -> None:
    broker = await firefox_broker(broker_factory)
    ttl, idle = (4.0, 60.0) if ending == "ttl" else (60.0, 3.0)
    lease = await bidi_lease(broker, ttl=ttl, idle_timeout=idle)
    async with raw(lease.connect_url) as client:
        if ending == "idle":  # protocol messages are activity: 5 s of them, then none
            for _ in range(10):
                assert (await client.call("session.status"))["type"] == "success"
                await asyncio.sleep(0.5)
            assert client.socket.close_code is None
        code, reason = await closed_with(client.socket)
    expected = (
        (4002, "lease ended: ttl_expired")
        if ending == "ttl"
        else (4003, "lease ended: idle_timeout")
    )
    assert (code, reason) == expected
    await broker.broker.leases.wait_all_closed()
    await no_browser_left()


async def test_browser_killed_ends_the_lease_and_closes_the_socket(
    broker_factory: BrokerFactory,
) -> None:
    broker = await firefox_broker(broker_factory)
    lease = await bidi_lease(broker, ttl=60)
    census = await broker.broker.engines[EngineName.FIREFOX].census_async(0)
    assert census.browser_pids, "the attachable browser is counted"
    async with raw(lease.connect_url) as client:
        await client.call("session.status")
        for pid in census.browser_pids:
            os.kill(pid, signal.SIGKILL)
        assert await closed_with(client.socket) == (4005, "lease ended: engine_crashed")
    await no_browser_left()


async def test_on_disconnect_end_ends_the_lease(broker_factory: BrokerFactory) -> None:
    broker = await firefox_broker(broker_factory)
    lease = await bidi_lease(broker, ttl=60, on_disconnect=OnDisconnect.END)
    async with raw(lease.connect_url) as client:
        await client.call("session.new", {"capabilities": {}})
        assert (await client.call("session.end"))["type"] == "success"
    for _ in range(100):
        if not broker.broker.leases.active_count:
            break
        await asyncio.sleep(0.1)
    released = await lease.release()
    assert (released.released_now, released.reason) == (False, "client_disconnected")
    await no_browser_left()


async def test_a_client_leaves_nothing_behind_for_the_next(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    """Its subscriptions and intercepts are undone when it leaves: the next client's pages load
    and it hears no event it did not ask for."""
    broker = await firefox_broker(broker_factory)
    lease = await bidi_lease(broker, ttl=60)
    async with raw(lease.connect_url) as first:
        await first.call("session.subscribe", {"events": ["browsingContext"]})
        intercept = await first.call("network.addIntercept", {"phases": ["beforeRequestSent"]})
        assert intercept["type"] == "success", intercept
    await asyncio.sleep(0.5)
    async with raw(lease.connect_url) as second:
        context = await first_context(second)
        url = fixture_server.url("form.html")
        went = await asyncio.wait_for(
            second.call(
                "browsingContext.navigate", {"context": context, "url": url, "wait": "complete"}
            ),
            20,
        )
        assert went["type"] == "success", went
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(second.socket.recv(), 1.0)  # no event of the first's
    await lease.release()
    await no_browser_left()


async def test_a_drain_refuses_new_clients_and_ends_the_lease_with_its_reason() -> None:
    """SIGTERM: a new connection is answered 503, the connected client goes on until the drain
    ends the lease (4011), and the lease's Firefox is gone with it."""
    broker = BrokerProcess(
        env={"BROKER_DRAIN_TIMEOUT_S": "3", "BROKER_ENGINES": '["chromium", "firefox"]'}
    ).start()
    try:
        async with AsyncBrokerClient(broker.address) as client:
            lease = await client.acquire(engine=Engine.FIREFOX, attach="bidi", ttl=120)
            async with raw(lease.connect_url) as attached:
                assert (await attached.call("session.status"))["type"] == "success"
                browsers = broker.browsers()
                assert browsers, "the lease's browser runs below the broker"
                broker.signal(signal.SIGTERM)
                await asyncio.sleep(0.5)
                with pytest.raises(InvalidStatus) as refused:
                    async with websockets.connect(lease.connect_url):
                        pass
                assert refused.value.response.status_code == 503
                assert (await attached.call("session.status"))["type"] == "success"
                assert await closed_with(attached.socket) == (4011, "lease ended: drained")
        assert await asyncio.to_thread(broker.wait, 60) == 0, broker.log()
        assert not [p.pid for p in browsers if p.is_running() and p.status() != "zombie"]
    finally:
        broker.stop()

"""The daemon runs on uvloop by default (`event_loop`), and everything it does there works: a
Run on a page, an attachable lease's pipe and socket, and a clean stop that leaves no browser.
The standard library's loop stays one setting away (in-process tests run on it)."""

from __future__ import annotations

import asyncio
import json

import pytest

from browserbroker import AsyncBrokerClient, steps
from tests.attach.support import raw
from tests.fixture_site import FixtureSite
from tests.support import BrokerProcess, alive

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _listening(broker: BrokerProcess) -> dict[str, object]:
    for line in broker.log().splitlines():
        if line.startswith("{") and '"broker listening"' in line:
            return json.loads(line)  # type: ignore[no-any-return]
    raise AssertionError(f"no 'broker listening' line:\n{broker.log()[-3000:]}")


async def _lease_work(broker: BrokerProcess, site: FixtureSite) -> None:
    async with AsyncBrokerClient(broker.address) as client:
        async with client.lease(ttl=60) as lease:
            result = await lease.run(
                steps.goto(site.url("form.html")), steps.text("h1"), timeout=60
            )
            assert result[1].text == "Fixture"
        async with client.lease(attach="cdp", ttl=60) as lease, raw(lease.connect_url) as cdp:
            answer = await cdp.call("Target.createTarget", {"url": "about:blank"})
            assert answer["result"]["targetId"], answer
        status = await client.status()
        assert status.active_leases == 0


@pytest.mark.parametrize(
    ("args", "expected"), [([], "uvloop"), (["--event-loop", "asyncio"], "asyncio")]
)
def test_the_daemon_serves_on_its_event_loop(
    args: list[str], expected: str, fixture_server: FixtureSite
) -> None:
    broker = BrokerProcess(args=args).start()
    try:
        assert _listening(broker)["event_loop"] == expected
        asyncio.run(_lease_work(broker, fixture_server))
        browsers = broker.browsers()
        assert browsers  # the warm pool's, at least
        broker.stop()
        assert broker.wait(60) == 0, broker.log()[-3000:]
        assert not [p for p in browsers if alive(p)]
        assert "Traceback" not in broker.log(), broker.log()[-3000:]
    finally:
        broker.stop()


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--event-loop", "trio"], {}, "argument --event-loop: invalid choice: 'trio'"),
        ([], {"BROKER_EVENT_LOOP": "trio"}, "event_loop"),
    ],
)
def test_an_unknown_event_loop_is_refused_by_name(
    args: list[str], env: dict[str, str], named: str
) -> None:
    with pytest.raises(RuntimeError, match="did not start") as refused:
        BrokerProcess(args=args, env=env).start(timeout_s=30)
    assert named in str(refused.value)

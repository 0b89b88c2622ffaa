"""The memory budget counts a Playwright-protocol browser's launch script: a served lease, and a
ready browser of a `playwright` pool, cost their session's estimate plus the script's, so a pool
of them opens no browser the budget cannot hold beside the leases."""

from __future__ import annotations

import asyncio

import pytest

from broker.errors import LimitExceeded
from broker.leases.lease import Lease, LeaseSpec
from broker.model.attach import AttachOptions, AttachProtocol
from broker.model.options import EngineName, Isolation
from broker.warm.pools import ATTACH_MEMORY_MB, Pools
from tests.fakes import FakeEngine

SESSION_MB = 100.0
SCRIPT_MB = ATTACH_MEMORY_MB[AttachProtocol.PLAYWRIGHT]


def spec(protocol: AttachProtocol | None) -> LeaseSpec:
    attach = AttachOptions(protocol) if protocol is not None else None
    return LeaseSpec(
        EngineName.CHROMIUM, Isolation.BROWSER, ttl_s=60, idle_timeout_s=60, attach=attach
    )


def pools_of(active: list[Lease], budget: float) -> Pools:
    return Pools(lambda: active, None, lambda engine, isolation: SESSION_MB, budget)


@pytest.mark.parametrize(
    ("protocol", "each"),
    [(None, SESSION_MB), (AttachProtocol.CDP, SESSION_MB), (AttachProtocol.PLAYWRIGHT, 190.0)],
)
def test_a_served_lease_counts_its_launch_script(
    protocol: AttachProtocol | None, each: float
) -> None:
    active = [Lease(spec(protocol), 0.0) for _ in range(2)]
    assert pools_of(active, 0.0).leases_mb() == 2 * each


async def test_a_playwright_pool_fills_only_what_the_budget_holds() -> None:
    # Room for two plain sessions, but for one served browser only (190 MiB each).
    pools = pools_of([], 2 * SESSION_MB + 10)
    pool = pools.add(FakeEngine(), Isolation.BROWSER, 2, attach=AttachProtocol.PLAYWRIGHT)
    async with pools:
        for _ in range(100):  # the first refill opens...
            if len(pool):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)  # ...and the second, which would not fit, does not
        assert len(pool) == 1
        assert pools.warm_mb() == SESSION_MB + SCRIPT_MB
        with pytest.raises(LimitExceeded, match="memory_budget_mb"):
            # Two served leases alone (380 MiB) exceed the budget: the warm one is dropped first.
            active = [Lease(spec(AttachProtocol.PLAYWRIGHT), 0.0) for _ in range(2)]
            pools._active = lambda: active
            pools.take(spec(AttachProtocol.CDP))
        assert len(pool) == 0 and pools.memory_drops == 1

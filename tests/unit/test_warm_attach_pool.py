"""An attachable pool and a plain pool of the same pair, over a fake engine: each opens its own
kind (the engine is asked for attachable sessions by the attachable pool only), each serves only
leases of its kind, and a lease of the other kind is neither a hit nor a miss of it."""

from __future__ import annotations

import asyncio

from broker.engines.base import Session
from broker.leases.lease import LeaseSpec
from broker.model.attach import AttachOptions, AttachProtocol, OnDisconnect
from broker.model.options import BrowserOptions, ContextOptions, EngineName, Isolation
from broker.warm.pools import Pools
from tests.fakes import FakeEngine, FakeSession


class AttachRecorder(FakeEngine):
    def __init__(self) -> None:
        super().__init__(EngineName.CHROMIUM)
        self.attachable: set[Session] = set()

    async def open_session(
        self,
        isolation: Isolation,
        options: ContextOptions,
        browser_options: BrowserOptions | None = None,
        *,
        tenant: str = "",
        attach: AttachOptions | None = None,
    ) -> FakeSession:
        session = await super().open_session(isolation, options, browser_options, tenant=tenant)
        if attach is not None:
            assert attach.protocol is AttachProtocol.CDP
            self.attachable.add(session)
        return session


def spec(attach: AttachOptions | None = None) -> LeaseSpec:
    return LeaseSpec(
        EngineName.CHROMIUM, Isolation.BROWSER, ttl_s=60, idle_timeout_s=60, attach=attach
    )


async def test_each_pool_serves_its_own_kind() -> None:
    engine = AttachRecorder()
    pools = Pools(lambda: [], None, lambda engine, isolation: 100.0)
    plain = pools.add(engine, Isolation.BROWSER, 1)
    cdp = pools.add(engine, Isolation.BROWSER, 1, attach=AttachProtocol.CDP)
    assert (plain.name, cdp.name) == ("chromium/browser", "chromium/browser+cdp")
    async with pools:
        for pool in (plain, cdp):
            await asyncio.wait_for(pool.filled.wait(), 5)
        assert set(cdp.sessions()) == engine.attachable
        assert not set(plain.sessions()) & engine.attachable
        ending = AttachOptions(AttachProtocol.CDP, OnDisconnect.END)  # the lease's, not the pool's
        lent = pools.take(spec(ending))
        assert lent is not None and lent in engine.attachable
        other = pools.take(spec())
        assert other is not None and other not in engine.attachable
        assert [(p.hits, p.misses) for p in (plain, cdp)] == [(1, 0), (1, 0)]
        assert pools.take(spec(ending)) is None  # none ready yet: a miss of the cdp pool only
        assert [(p.hits, p.misses) for p in (plain, cdp)] == [(1, 0), (1, 1)]
        for session in (lent, other):
            await session.close()

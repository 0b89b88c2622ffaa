"""Opening a session: the engine a lease may use, its own proxy vetted, and a cold open within
bounds: the caller's deadline, and the broker's own limit.

An open that cannot finish before the deadline (by what opens have taken so far) is refused at
once; one that never answers is abandoned at `open_timeout_s`, so a hung browser cannot hold a
slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from broker.common.clock import Clock
from broker.egress.proxy import EgressGateway
from broker.engines.base import Engine, Session
from broker.errors import DeadlineExceeded, EngineNotInstalled, NotPermitted, Unavailable
from broker.leases.estimates import Estimates
from broker.leases.lease import LeaseSpec
from broker.leases.limits import Limits
from broker.model.options import EngineName


def engine_for(engines: Mapping[EngineName, Engine], spec: LeaseSpec) -> Engine:
    """The engine that serves `spec`, if its tenant may use it and it can open sessions."""
    spec.tenant.check_allowed(spec.engine, spec.isolation)
    engine = engines.get(spec.engine)
    if engine is None:
        raise EngineNotInstalled(spec.engine.value, "not enabled on this broker")
    availability = engine.availability()
    if not availability.available:
        raise EngineNotInstalled(spec.engine.value, availability.detail)
    return engine


async def vet_client_proxy(egress: EgressGateway | None, spec: LeaseSpec) -> None:
    """A lease's own proxy carries all its traffic: its address must pass the policy."""
    proxy = spec.context.proxy
    if proxy is None or egress is None:
        return
    decision = await egress.vet_proxy(proxy.server, spec.tenant.egress)
    if not decision.allowed:
        raise NotPermitted(f"context.proxy: {decision.describe('the proxy')}")


async def open_cold(
    engine: Engine,
    spec: LeaseSpec,
    deadline: float | None,
    clock: Clock,
    estimates: Estimates,
    limits: Limits,
) -> Session:
    remaining = None if deadline is None else deadline - clock.now()
    expected = estimates.expected_open_s(spec.engine, spec.isolation)
    if remaining is not None and expected is not None and remaining < expected:
        raise DeadlineExceeded(
            f"a new {spec.engine.value} session takes about {expected:.2f}s; "
            f"only {max(0.0, remaining):.2f}s of the deadline remain"
        )
    bound = limits.open_timeout_s
    by_deadline = remaining is not None and remaining < bound
    started = clock.now()
    try:
        async with asyncio.timeout(remaining if by_deadline else bound):
            session = await engine.open_session(
                spec.isolation,
                spec.context,
                spec.camoufox,
                tenant=spec.tenant.name,
                attach=spec.attach,
            )
    except TimeoutError:
        if by_deadline:
            raise DeadlineExceeded("deadline passed while opening the browser session") from None
        raise Unavailable(f"{spec.engine.value} did not open a session within {bound:g}s") from None
    estimates.session_opened(spec.engine, spec.isolation, clock.now() - started)
    return session

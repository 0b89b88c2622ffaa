"""Opening a cold session within bounds: the caller's deadline, and the broker's own limit.

An open that cannot finish before the deadline (by what opens have taken so far) is refused at
once; one that never answers is abandoned at `open_timeout_s`, so a hung browser cannot hold a
slot.
"""

from __future__ import annotations

import asyncio

from broker.common.clock import Clock
from broker.engines.base import Engine, Session
from broker.errors import DeadlineExceeded, Unavailable
from broker.leases.estimates import Estimates
from broker.leases.lease import LeaseSpec
from broker.leases.limits import Limits


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
            session = await engine.open_session(spec.isolation, spec.context, spec.camoufox)
    except TimeoutError:
        if by_deadline:
            raise DeadlineExceeded("deadline passed while opening the browser session") from None
        raise Unavailable(f"{spec.engine.value} did not open a session within {bound:g}s") from None
    estimates.session_opened(spec.engine, spec.isolation, clock.now() - started)
    return session

"""How the table names a lease's end when its cause comes from elsewhere (the browser, a drain),
and the drain's wait: leases go on, ending as they would, until none is left or the drain's
deadline passes (docs/operations.md#shutdown-and-the-drain)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from broker.engines.base import LostCause
from broker.errors import Unavailable
from broker.leases.lease import Lease, ReleaseReason

log = logging.getLogger("broker.leases")

LOST_REASONS = {
    LostCause.ENGINE_CRASHED: ReleaseReason.ENGINE_CRASHED,
    LostCause.PAGE_CRASHED: ReleaseReason.PAGE_CRASHED,
}


class Draining(Unavailable):
    """This broker is draining: it takes no new leases. A cluster node places the Acquire on
    another node; a single broker answers UNAVAILABLE."""

    def __init__(self) -> None:
        super().__init__("broker is shutting down")


def ended_while_opening(reason: ReleaseReason) -> Unavailable:
    """What an Acquire gets when its lease ended while its session was being opened."""
    if reason in (ReleaseReason.SHUTDOWN, ReleaseReason.DRAINED):
        return Draining()
    return Unavailable(f"the browser session died while it was being opened ({reason.value})")


async def wait_drained(
    live: Callable[[], list[Lease]], emptied: asyncio.Event, deadline_s: float, grace_s: float
) -> ReleaseReason:
    """The drain's wait: until no lease is `live()` (`emptied` is set when the last one ends)
    or `deadline_s` has passed, then until the Runs still running have finished or `grace_s`
    has passed. Returns the reason the leases left then end with: `drained` after a drain,
    `shutdown` without one (0 s)."""
    reason = ReleaseReason.SHUTDOWN
    if deadline_s > 0:
        reason = ReleaseReason.DRAINED
        log.info("draining", extra={"active": len(live()), "drain_timeout_s": deadline_s})
        if live():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline_s):
                    await emptied.wait()
        if live():
            log.warning("drain deadline passed", extra={"active": len(live())})
    running = [task for lease in live() for task in lease.run_tasks]
    if running and grace_s > 0:
        await asyncio.wait(running, timeout=grace_s)
    return reason

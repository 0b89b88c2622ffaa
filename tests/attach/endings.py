"""What every ending of an attachable lease leaves, checked the same way whatever ended it: the
lease ended once (one release through the one path), a late Release answers that first
outcome, and the engine has no session, context, page or browser process left of it."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from broker.engines.playwright.engine import PlaywrightEngine
from broker.leases.events import LeaseObserver
from broker.leases.lease import Lease, ReleaseOutcome
from browserbroker import AsyncLease
from tests.support import InProcessBroker, eventually, in_process_browsers


class Releases(LeaseObserver):
    """Counts the releases the lease table announces, per lease."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.reason: dict[str, str] = {}

    def lease_released(self, lease: Lease, outcome: ReleaseOutcome) -> None:
        self.count[lease.id] += 1
        self.reason.setdefault(lease.id, outcome.reason.value)


def count_releases(running: InProcessBroker) -> Releases:
    releases = Releases()
    running.broker.observers.add(releases)
    return releases


async def ended_once(
    running: InProcessBroker,
    releases: Releases,
    lease: AsyncLease,
    reason: str,
    *,
    served: bool = True,
) -> None:
    """`lease` ended for `reason` exactly once and left nothing behind. `served`: the broker
    still answers gRPC (a late Release goes through it); otherwise the lease table is asked,
    as its Release handler would."""
    table = running.broker.leases
    await eventually(lambda: lease.id in releases.count, 30)
    if served:
        late = await lease.release()
        assert (late.released_now, late.reason) == (False, reason)
    else:
        outcome, ended = table.release_by_client(lease.id, lease.grant.token)
        assert (outcome.released_now, outcome.reason.value, ended) == (False, reason, None)
    assert releases.count[lease.id] == 1 and releases.reason[lease.id] == reason
    await table.wait_all_closed()
    for engine in running.broker.engines.values():
        if isinstance(engine, PlaywrightEngine):
            assert not engine.sessions, f"{engine.name}: sessions left"
            await eventually(_no_browser_of(engine), 30)
            census = engine.census()
            assert (census.contexts, census.pages, census.unclosed) == (0, 0, 0), census
    for _ in range(100):
        if not in_process_browsers():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"browsers left: {[p.pid for p in in_process_browsers()]}")


def _no_browser_of(engine: PlaywrightEngine) -> Callable[[], bool]:
    return lambda: not engine.census().browser_pids

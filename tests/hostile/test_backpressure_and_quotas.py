"""A hostile tenant queues past its quota, or asks for results it never reads.

Quotas: `max_leases` is checked when a lease is granted, also to an Acquire that waited in the
queue. A waiter of a tenant at its maximum is passed over (it keeps waiting, within its deadline)
and the next tenant's waiter gets the slot: the capped tenant never blocks the others.

Backpressure: a Run's step results go through a small bounded buffer, so a Run never runs ahead
of a reader that does not read. An unread stream holds its place in the lease's Run limit until
it closes, and it still ends with the Run's deadline and with its lease.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import time

import psutil
import pytest

from browserbroker import AsyncBrokerClient, AsyncLease, DeadlineExceededError, steps
from browserbroker.v1 import broker_pb2 as pb
from tests.conftest import BrokerFactory
from tests.support import InProcessBroker, eventually

pytestmark = pytest.mark.browser

TOKENS = {"capped": "capped-tenant-token", "other": "other-tenant-token"}
TENANTS = [
    {"name": "capped", "token_sha256": [hashlib.sha256(b"capped-tenant-token").hexdigest()],
     "max_leases": 1},
    {"name": "other", "token_sha256": [hashlib.sha256(b"other-tenant-token").hexdigest()]},
]  # fmt: skip


def _client(running: InProcessBroker, tenant: str) -> AsyncBrokerClient:
    return AsyncBrokerClient(running.address, token=TOKENS[tenant])


def _held(running: InProcessBroker, tenant: str) -> int:
    return sum(1 for lease in running.broker.leases.active_leases() if lease.owner == tenant)


async def _queued(running: InProcessBroker, count: int) -> None:
    await eventually(lambda: running.broker.leases.queued_count == count)


# ------------------------------------------------------------------ quotas


async def test_queued_acquires_never_take_a_tenant_past_max_leases(
    broker_factory: BrokerFactory,
) -> None:
    """(A tenant's first lease launches its own browser, cold: the waits leave room for a loaded
    machine.) Capacity 3, all held by another tenant; the capped tenant (max_leases 1) queues three
    Acquires, then the three slots free at once. Before the fix it ended with three leases."""
    running = await broker_factory(capacity=3, tenants=TENANTS)
    capped, other = _client(running, "capped"), _client(running, "other")
    try:
        holding = [await other.acquire(ttl=120) for _ in range(3)]
        waiting = [asyncio.create_task(capped.acquire(ttl=120, timeout=90)) for _ in range(3)]
        await _queued(running, 3)  # each one passed the quota check: it held nothing yet
        for lease in holding:
            await lease.release()
        done, _ = await asyncio.wait(waiting, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        assert len(done) == 1
        await asyncio.sleep(1.0)  # time for the freed slots to be (wrongly) granted
        assert _held(running, "capped") == 1, "a queued Acquire went past max_leases"
        assert sum(task.done() for task in waiting) == 1
        # The quota frees when its lease ends: the next waiter is granted then, one at a time.
        (first,) = [task.result() for task in waiting if task.done()]
        await first.release()
        await eventually(lambda: sum(task.done() for task in waiting) == 2)
        assert _held(running, "capped") == 1
        for task in waiting:
            task.cancel()
        results = await asyncio.gather(*waiting, return_exceptions=True)
        for result in results:
            if isinstance(result, AsyncLease):
                await result.release()
    finally:
        await capped.close()
        await other.close()


async def test_a_capped_waiter_does_not_block_the_queue_for_other_tenants(
    broker_factory: BrokerFactory,
) -> None:
    """FIFO among the waiters that may be granted: the capped tenant's second waiter, first in
    line, is passed over and keeps waiting; the other tenant's waiter behind it gets the slot."""
    running = await broker_factory(capacity=2, tenants=TENANTS)
    capped, other = _client(running, "capped"), _client(running, "other")
    try:
        holding = [await other.acquire(ttl=120) for _ in range(2)]
        first = asyncio.create_task(capped.acquire(ttl=120, timeout=90))
        await _queued(running, 1)
        second = asyncio.create_task(capped.acquire(ttl=120, timeout=90))
        await _queued(running, 2)
        behind = asyncio.create_task(other.acquire(ttl=120, timeout=90))
        await _queued(running, 3)
        await holding[0].release()
        granted = await asyncio.wait_for(first, 60)
        await holding[1].release()
        later = await asyncio.wait_for(behind, 60)  # passed the capped waiter ahead of it
        assert not second.done() and running.broker.leases.queued_count == 1
        await granted.release()  # its quota frees: now the capped waiter gets the slot
        last = await asyncio.wait_for(second, 60)
        assert _held(running, "capped") == 1
        await last.release()
        await later.release()
    finally:
        await capped.close()
        await other.close()


async def test_a_capped_waiter_ends_at_its_deadline(broker_factory: BrokerFactory) -> None:
    """A waiter its tenant's quota keeps back gives up at its deadline, holding nothing."""
    running = await broker_factory(capacity=2, tenants=TENANTS)
    capped, other = _client(running, "capped"), _client(running, "other")
    try:
        holding = [await other.acquire(ttl=120) for _ in range(2)]
        first = asyncio.create_task(capped.acquire(ttl=120, timeout=90))
        await _queued(running, 1)  # first in line: the short waiter must be the one passed over
        second = asyncio.create_task(capped.acquire(ttl=120, timeout=4))
        await _queued(running, 2)
        for lease in holding:  # two slots free, but the capped tenant may hold one
            await lease.release()
        mine = await asyncio.wait_for(first, 60)  # opens the tenant's own browser, cold
        with pytest.raises(DeadlineExceededError):
            await second
        await _queued(running, 0)  # the broker's side of the deadline, a moment later
        assert _held(running, "capped") == 1
        await mine.release()
    finally:
        await capped.close()
        await other.close()


# ------------------------------------------------------------- backpressure

BIG_MB = 3  # under the client's 4 MiB message limit (for the test that reads)
UNREAD_MB = 5
STEPS_PER_RUN = 10
UNREAD_RUNS = 4
# Before the fix four unread Runs held 4 x 10 x 5 MB of results (and their encodings). With the
# bounded buffer each unread stream holds a result or two; the bound keeps 2x headroom over what
# was measured.
RSS_GROWTH_BOUND_MB = 120
# The Runs are taken to have stopped for their reader once no step ran for this long (a step
# takes up to about 5 s on a loaded machine).
STALL_S = 20.0


def _big_run(lease: AsyncLease, mb: int = BIG_MB) -> pb.RunRequest:
    script = f"'x'.repeat({mb} * 1024 * 1024)"
    return pb.RunRequest(
        lease_id=lease.id,
        token=lease.grant.token,
        steps=[steps.evaluate(script)] * STEPS_PER_RUN,
    )


def _rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


async def test_unread_runs_do_not_pile_up_in_memory(broker_factory: BrokerFactory) -> None:
    """Four Runs on one lease, each asking for 50 MB of results, none read. The Run waits for its
    reader: memory stays bounded, and the Run slots stay taken until the streams close."""
    running = await broker_factory(max_run_timeout_s=600)
    lease = await running.client.acquire(ttl=600, idle_timeout=600)
    (held,) = running.broker.leases.active_leases()
    await lease.run(steps.evaluate("1"), timeout=30)  # the page is up before measuring
    before = peak = _rss_mb()
    request = _big_run(lease, UNREAD_MB)
    calls = [running.client.stub.Run(request, timeout=600) for _ in range(UNREAD_RUNS)]
    await eventually(lambda: held.runs_in_flight == UNREAD_RUNS)  # all there; nothing is read
    # Until the Runs stall after their first results (or, unbounded, run past one Run's steps),
    # however slow the machine is.
    last_step, last_change = held.step_count, time.monotonic()
    while held.step_count - 1 <= STEPS_PER_RUN and held.run_tasks:
        if held.step_count >= 2 and time.monotonic() - last_change > STALL_S:
            break
        peak = max(peak, _rss_mb())
        await asyncio.sleep(0.5)
        if held.step_count != last_step:
            last_step, last_change = held.step_count, time.monotonic()
    peak = max(peak, _rss_mb())
    steps_run = held.step_count - 1
    print(f"RSS {before:.0f} MB -> peak {peak:.0f} MB; steps run {steps_run}")
    assert steps_run < STEPS_PER_RUN, "a Run ran ahead of its reader"
    assert peak - before < RSS_GROWTH_BOUND_MB, f"RSS grew {peak - before:.0f} MB"
    assert held.runs_in_flight == UNREAD_RUNS  # unread streams hold their Run slots
    for call in calls:
        call.cancel()
    await eventually(lambda: held.runs_in_flight == 0)  # freed when the streams close
    assert (await lease.run(steps.evaluate("1 + 1"), timeout=30))[0].value == 2
    await lease.release()
    await running.broker.leases.wait_all_closed()
    print(f"RSS after release {_rss_mb():.0f} MB")


async def test_a_slow_reader_gets_every_result(broker_factory: BrokerFactory) -> None:
    """Backpressure loses nothing: a reader that pauses between results gets all of them."""
    running = await broker_factory()
    async with running.client.lease(ttl=120) as lease:
        seen = []
        async for result in lease.stream(*_big_run(lease).steps, timeout=120):
            seen.append(len(result.value))
            await asyncio.sleep(0.2)
        assert seen == [BIG_MB * 1024 * 1024] * STEPS_PER_RUN


async def test_an_unread_stream_ends_at_the_runs_deadline(broker_factory: BrokerFactory) -> None:
    """A Run blocked on its reader still ends at its deadline: its slot frees and the stream
    closes, though the client never read it and never cancelled."""
    running = await broker_factory(max_run_timeout_s=4)
    lease = await running.client.acquire(ttl=120, idle_timeout=120)
    (held,) = running.broker.leases.active_leases()
    call = running.client.stub.Run(_big_run(lease))  # no deadline of its own: the broker's
    await eventually(lambda: held.runs_in_flight == 1)
    await eventually(lambda: held.runs_in_flight == 0, timeout_s=30)
    call.cancel()
    assert held.released is None
    assert (await lease.run(steps.evaluate("1 + 1"), timeout=30))[0].value == 2
    await lease.release()


async def test_an_unread_stream_does_not_keep_its_lease_past_its_ttl(
    broker_factory: BrokerFactory,
) -> None:
    """The lease's TTL ends the lease and its unread streams with it."""
    running = await broker_factory(max_run_timeout_s=600, ttl_jitter_fraction=0)
    lease = await running.client.acquire(ttl=5, idle_timeout=120)
    (held,) = running.broker.leases.active_leases()
    calls = [running.client.stub.Run(_big_run(lease)) for _ in range(2)]
    await eventually(lambda: held.runs_in_flight == 2)
    await eventually(lambda: held.released is not None, timeout_s=30)
    assert held.released is not None and held.released.reason.value == "ttl_expired"
    await eventually(lambda: held.runs_in_flight == 0, timeout_s=30)
    for call in calls:
        call.cancel()


async def test_an_unread_stream_does_not_keep_its_lease_from_idling_out(
    broker_factory: BrokerFactory,
) -> None:
    """A Run waiting for its reader is not activity: the idle timeout ends the lease."""
    running = await broker_factory(max_run_timeout_s=600)
    lease = await running.client.acquire(ttl=300, idle_timeout=3)
    (held,) = running.broker.leases.active_leases()
    call = running.client.stub.Run(_big_run(lease))
    await eventually(lambda: held.released is not None, timeout_s=30)
    assert held.released is not None and held.released.reason.value == "idle_timeout"
    assert held.step_count < STEPS_PER_RUN
    await eventually(lambda: held.runs_in_flight == 0, timeout_s=30)
    call.cancel()

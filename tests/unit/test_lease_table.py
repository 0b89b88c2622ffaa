"""The lease table and its one release path, with a fake engine and a fake clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broker.errors import DeadlineExceeded, LeaseEnded, LeaseNotFound, PermissionDenied, QueueFull
from broker.leases.lease import LeaseSpec, ReleaseReason
from broker.leases.limits import Limits
from broker.leases.table import LeaseTable
from broker.model.options import EngineName, Isolation
from tests.fakes import FakeClock, FakeEngine, ReleaseRecorder

SPEC = LeaseSpec(EngineName.CHROMIUM, Isolation.CONTEXT, ttl_s=60, idle_timeout_s=30)
LONG_IDLE = LeaseSpec(EngineName.CHROMIUM, Isolation.CONTEXT, ttl_s=60, idle_timeout_s=600)


def make(
    capacity: int = 2, queue_limit: int = 4, **kw: Any
) -> tuple[LeaseTable, FakeEngine, FakeClock, ReleaseRecorder]:
    engine = FakeEngine()
    clock = FakeClock()
    recorder = ReleaseRecorder()
    limits = Limits(capacity=capacity, queue_limit=queue_limit, ttl_jitter_fraction=0.0, **kw)
    leases = LeaseTable({EngineName.CHROMIUM: engine}, clock, limits, recorder)
    return leases, engine, clock, recorder


async def test_release_is_idempotent_and_keeps_first_reason() -> None:
    leases, engine, clock, recorder = make()
    lease = await leases.acquire(SPEC, None)
    first = leases.release(lease, ReleaseReason.CLIENT_RELEASE)
    clock.advance(5)
    second = leases.release(lease, ReleaseReason.TTL_EXPIRED)
    assert first.released_now and not second.released_now
    assert second.reason is ReleaseReason.CLIENT_RELEASE and second.released_at == first.released_at
    await leases.wait_all_closed()
    assert recorder.count(lease.id) == 1
    assert engine.all_sessions[0].closed == 1
    assert leases.active_count == 0


async def test_lookup_errors() -> None:
    leases, _, _, _ = make()
    lease = await leases.acquire(SPEC, None)
    with pytest.raises(LeaseNotFound):
        leases.get("nope", lease.token)
    with pytest.raises(PermissionDenied):
        leases.get(lease.id, "wrong")
    leases.release(lease, ReleaseReason.IDLE_TIMEOUT)
    with pytest.raises(LeaseEnded) as ended:
        leases.get(lease.id, lease.token)
    assert ended.value.reason == "idle_timeout"
    await leases.wait_all_closed()


async def test_ttl_expiry_releases_once() -> None:
    leases, engine, clock, recorder = make()
    lease = await leases.acquire(LONG_IDLE, None)
    clock.advance(59.9)
    assert lease.released is None
    clock.advance(0.2)
    assert lease.released is not None and lease.released.reason is ReleaseReason.TTL_EXPIRED
    assert leases.release(lease, ReleaseReason.CLIENT_RELEASE).released_now is False
    await leases.wait_all_closed()
    assert recorder.count(lease.id) == 1 and engine.all_sessions[0].closed == 1


async def test_keep_alive_extends_ttl_and_counts_as_activity() -> None:
    leases, _, clock, _ = make()
    lease = await leases.acquire(SPEC, None)
    clock.advance(25)
    leases.keep_alive(lease, 60)
    clock.advance(25)  # 50s since grant: past the idle timeout had KeepAlive not counted
    assert lease.released is None
    clock.advance(
        40
    )  # TTL renewed at t=25 for 60s: ends at t=85... but idle (30s after t=25) first
    assert lease.released is not None
    assert lease.released.reason is ReleaseReason.IDLE_TIMEOUT
    await leases.wait_all_closed()


async def test_capacity_queue_is_fifo_and_served_on_release() -> None:
    leases, _, _, _ = make(capacity=1)
    first = await leases.acquire(SPEC, None)
    order: list[str] = []

    async def wait(name: str) -> None:
        lease = await leases.acquire(SPEC, 5)
        order.append(name)
        leases.release(lease, ReleaseReason.CLIENT_RELEASE)

    waiters = [asyncio.create_task(wait("a")), asyncio.create_task(wait("b"))]
    await asyncio.sleep(0)
    assert leases.queued_count == 2
    leases.release(first, ReleaseReason.CLIENT_RELEASE)
    await asyncio.gather(*waiters)
    assert order == ["a", "b"]
    assert leases.active_count == 0 and leases.queued_count == 0
    await leases.wait_all_closed()


async def test_a_closing_session_holds_its_slot_until_the_browser_has_closed_it() -> None:
    leases, engine, _, recorder = make(capacity=1, queue_limit=0)
    first = await leases.acquire(SPEC, None)
    engine.close_gate = asyncio.Event()
    outcome = leases.release(first, ReleaseReason.CLIENT_RELEASE)
    assert outcome.released_now and recorder.count(first.id) == 1  # ended at once
    await asyncio.sleep(0)
    assert (leases.active_count, leases.closing_count, leases.used_count) == (0, 1, 1)
    with pytest.raises(QueueFull):  # no queue: the slot is still taken by the close
        await leases.acquire(SPEC, None)
    engine.close_gate.set()
    await leases.wait_all_closed()
    assert (leases.closing_count, leases.used_count) == (0, 0)
    second = await leases.acquire(SPEC, None)
    assert second.session is not None and engine.all_sessions[0].closed == 1
    leases.release(second, ReleaseReason.CLIENT_RELEASE)
    await leases.wait_all_closed()


async def test_a_waiter_gets_the_slot_when_the_close_finishes_not_before() -> None:
    leases, engine, _, _ = make(capacity=1)
    first = await leases.acquire(SPEC, None)
    engine.close_gate = asyncio.Event()
    waiter = asyncio.create_task(leases.acquire(SPEC, 5))
    await asyncio.sleep(0)
    leases.release(first, ReleaseReason.CLIENT_RELEASE)
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiter.done() and leases.queued_count == 1
    engine.close_gate.set()
    second = await waiter
    assert engine.all_sessions[0].closed == 1 and engine.all_sessions[0] not in engine.open_sessions
    leases.release(second, ReleaseReason.CLIENT_RELEASE)
    await leases.wait_all_closed()


async def test_waiter_leaves_queue_on_deadline_and_on_cancel() -> None:
    leases, engine, _, _ = make(capacity=1)
    held = await leases.acquire(SPEC, None)
    with pytest.raises(DeadlineExceeded):
        await leases.acquire(SPEC, 0.01)
    cancelled = asyncio.create_task(leases.acquire(SPEC, 5))
    await asyncio.sleep(0)
    assert leases.queued_count == 1
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert leases.queued_count == 0
    leases.release(held, ReleaseReason.CLIENT_RELEASE)
    assert leases.active_count == 0  # nobody was handed a session no one will use
    await leases.wait_all_closed()
    assert len(engine.all_sessions) == 1


async def test_full_queue_answers_at_once_with_retry_hint() -> None:
    leases, _, _, _ = make(capacity=1, queue_limit=1)
    held = await leases.acquire(SPEC, None)
    waiting = asyncio.create_task(leases.acquire(SPEC, 5))
    await asyncio.sleep(0)
    with pytest.raises(QueueFull) as full:
        await leases.acquire(SPEC, 5)
    assert full.value.retry_after_s > 0
    leases.release(held, ReleaseReason.CLIENT_RELEASE)
    leases.release(await waiting, ReleaseReason.CLIENT_RELEASE)
    await leases.wait_all_closed()


async def test_slot_granted_while_waiter_is_cancelled_goes_back() -> None:
    leases, _, _, _ = make(capacity=1)
    held = await leases.acquire(SPEC, None)
    waiter = asyncio.create_task(leases.acquire(SPEC, 5))
    await asyncio.sleep(0)
    leases.release(held, ReleaseReason.CLIENT_RELEASE)  # grants the waiter's future now...
    waiter.cancel()  # ...but the waiter is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert leases.active_count == 0
    await leases.wait_all_closed()


async def test_burst_of_equal_ttls_spreads_over_jitter_window() -> None:
    engine = FakeEngine()
    clock = FakeClock()
    limits = Limits(capacity=50, ttl_jitter_fraction=0.1, max_jitter_s=30)
    leases = LeaseTable({EngineName.CHROMIUM: engine}, clock, limits)
    granted = [await leases.acquire(LONG_IDLE, None) for _ in range(50)]
    expiries = sorted(lease.expires_at - clock.now() for lease in granted)
    assert expiries[0] >= 54 and expiries[-1] <= 60  # within [ttl - 10%, ttl]
    assert expiries[-1] - expiries[0] > 3  # spread, not one instant
    assert len({round(e, 3) for e in expiries}) > 40
    released_at: list[float] = []
    for _ in range(70):
        clock.advance(1)
        released_at += [clock.now()] * (50 - leases.active_count - len(released_at))
    assert leases.active_count == 0
    per_second = max(released_at.count(t) for t in set(released_at))
    assert per_second < 50 // 2  # no single burst of closes
    await leases.wait_all_closed()

"""The lease table and its one release path, with a fake engine and a fake clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broker.errors import DeadlineExceeded, LeaseEnded, LeaseNotFound, PermissionDenied, QueueFull
from broker.lease import EngineName, Isolation, LeaseSpec, ReleaseReason
from broker.leases import LeaseManager, Limits
from tests.fakes import FakeClock, FakeEngine, ReleaseRecorder

SPEC = LeaseSpec(EngineName.CHROMIUM, Isolation.CONTEXT, ttl_s=60, idle_timeout_s=30)
LONG_IDLE = LeaseSpec(EngineName.CHROMIUM, Isolation.CONTEXT, ttl_s=60, idle_timeout_s=600)


def make(
    capacity: int = 2, queue_limit: int = 4, **kw: Any
) -> tuple[LeaseManager, FakeEngine, FakeClock, ReleaseRecorder]:
    engine = FakeEngine()
    clock = FakeClock()
    recorder = ReleaseRecorder()
    limits = Limits(capacity=capacity, queue_limit=queue_limit, ttl_jitter_fraction=0.0, **kw)
    manager = LeaseManager({EngineName.CHROMIUM: engine}, clock, limits, recorder)
    return manager, engine, clock, recorder


async def test_release_is_idempotent_and_keeps_first_reason() -> None:
    manager, engine, clock, recorder = make()
    lease = await manager.acquire(SPEC, None)
    first = manager.release(lease, ReleaseReason.CLIENT_RELEASE)
    clock.advance(5)
    second = manager.release(lease, ReleaseReason.TTL_EXPIRED)
    assert first.released_now and not second.released_now
    assert second.reason is ReleaseReason.CLIENT_RELEASE and second.released_at == first.released_at
    await manager.wait_all_closed()
    assert recorder.count(lease.id) == 1
    assert engine.all_sessions[0].closed == 1
    assert manager.active_count == 0


async def test_lookup_errors() -> None:
    manager, _, _, _ = make()
    lease = await manager.acquire(SPEC, None)
    with pytest.raises(LeaseNotFound):
        manager.get("nope", lease.token)
    with pytest.raises(PermissionDenied):
        manager.get(lease.id, "wrong")
    manager.release(lease, ReleaseReason.IDLE_TIMEOUT)
    with pytest.raises(LeaseEnded) as ended:
        manager.get(lease.id, lease.token)
    assert ended.value.reason == "idle_timeout"
    await manager.wait_all_closed()


async def test_ttl_expiry_releases_once() -> None:
    manager, engine, clock, recorder = make()
    lease = await manager.acquire(LONG_IDLE, None)
    clock.advance(59.9)
    assert lease.released is None
    clock.advance(0.2)
    assert lease.released is not None and lease.released.reason is ReleaseReason.TTL_EXPIRED
    assert manager.release(lease, ReleaseReason.CLIENT_RELEASE).released_now is False
    await manager.wait_all_closed()
    assert recorder.count(lease.id) == 1 and engine.all_sessions[0].closed == 1


async def test_keep_alive_extends_ttl_and_counts_as_activity() -> None:
    manager, _, clock, _ = make()
    lease = await manager.acquire(SPEC, None)
    clock.advance(25)
    manager.keep_alive(lease, 60)
    clock.advance(25)  # 50s since grant: past the idle timeout had KeepAlive not counted
    assert lease.released is None
    clock.advance(
        40
    )  # TTL renewed at t=25 for 60s: ends at t=85... but idle (30s after t=25) first
    assert lease.released is not None
    assert lease.released.reason is ReleaseReason.IDLE_TIMEOUT
    await manager.wait_all_closed()


async def test_capacity_queue_is_fifo_and_served_on_release() -> None:
    manager, _, _, _ = make(capacity=1)
    first = await manager.acquire(SPEC, None)
    order: list[str] = []

    async def wait(name: str) -> None:
        lease = await manager.acquire(SPEC, 5)
        order.append(name)
        manager.release(lease, ReleaseReason.CLIENT_RELEASE)

    waiters = [asyncio.create_task(wait("a")), asyncio.create_task(wait("b"))]
    await asyncio.sleep(0)
    assert manager.queued_count == 2
    manager.release(first, ReleaseReason.CLIENT_RELEASE)
    await asyncio.gather(*waiters)
    assert order == ["a", "b"]
    assert manager.active_count == 0 and manager.queued_count == 0
    await manager.wait_all_closed()


async def test_waiter_leaves_queue_on_deadline_and_on_cancel() -> None:
    manager, engine, _, _ = make(capacity=1)
    held = await manager.acquire(SPEC, None)
    with pytest.raises(DeadlineExceeded):
        await manager.acquire(SPEC, 0.01)
    cancelled = asyncio.create_task(manager.acquire(SPEC, 5))
    await asyncio.sleep(0)
    assert manager.queued_count == 1
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert manager.queued_count == 0
    manager.release(held, ReleaseReason.CLIENT_RELEASE)
    assert manager.active_count == 0  # nobody was handed a session no one will use
    await manager.wait_all_closed()
    assert len(engine.all_sessions) == 1


async def test_full_queue_answers_at_once_with_retry_hint() -> None:
    manager, _, _, _ = make(capacity=1, queue_limit=1)
    held = await manager.acquire(SPEC, None)
    waiting = asyncio.create_task(manager.acquire(SPEC, 5))
    await asyncio.sleep(0)
    with pytest.raises(QueueFull) as full:
        await manager.acquire(SPEC, 5)
    assert full.value.retry_after_s > 0
    manager.release(held, ReleaseReason.CLIENT_RELEASE)
    manager.release(await waiting, ReleaseReason.CLIENT_RELEASE)
    await manager.wait_all_closed()


async def test_slot_granted_while_waiter_is_cancelled_goes_back() -> None:
    manager, _, _, _ = make(capacity=1)
    held = await manager.acquire(SPEC, None)
    waiter = asyncio.create_task(manager.acquire(SPEC, 5))
    await asyncio.sleep(0)
    manager.release(held, ReleaseReason.CLIENT_RELEASE)  # grants the waiter's future now...
    waiter.cancel()  # ...but the waiter is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert manager.active_count == 0
    await manager.wait_all_closed()


async def test_burst_of_equal_ttls_spreads_over_jitter_window() -> None:
    engine = FakeEngine()
    clock = FakeClock()
    limits = Limits(capacity=50, ttl_jitter_fraction=0.1, max_jitter_s=30)
    manager = LeaseManager({EngineName.CHROMIUM: engine}, clock, limits)
    leases = [await manager.acquire(LONG_IDLE, None) for _ in range(50)]
    expiries = sorted(lease.expires_at - clock.now() for lease in leases)
    assert expiries[0] >= 54 and expiries[-1] <= 60  # within [ttl - 10%, ttl]
    assert expiries[-1] - expiries[0] > 3  # spread, not one instant
    assert len({round(e, 3) for e in expiries}) > 40
    released_at: list[float] = []
    for _ in range(70):
        clock.advance(1)
        released_at += [clock.now()] * (50 - manager.active_count - len(released_at))
    assert manager.active_count == 0
    per_second = max(released_at.count(t) for t in set(released_at))
    assert per_second < 50 // 2  # no single burst of closes
    await manager.wait_all_closed()

"""Every size, count and duration a caller controls is bounded, answered with a documented
status, and leaves nothing behind (fake engines, real gRPC)."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from grpc import aio

from broker.common.clock import LoopClock
from broker.errors import Unavailable
from broker.leases.events import LeaseObserver
from broker.leases.lease import Lease, LeaseSpec, ReleaseReason
from broker.leases.limits import Limits
from broker.leases.table import LeaseTable
from broker.leases.tombstones import Tombstone
from broker.model.options import ContextOptions, EngineName, Isolation, ProxySettings
from browserbroker import (
    DeadlineExceededError,
    InvalidArgumentError,
    ResourceExhaustedError,
    UnavailableError,
    steps,
)
from browserbroker.v1 import broker_pb2 as pb
from tests.fakes import FakeEngine


async def until(condition: Callable[[], bool]) -> None:
    """Until the server (in this event loop) reaches a state; a backstop of 10 s."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_runs_waiting_on_one_lease_are_bounded(start: Any) -> None:
    running = await start(max_runs_waiting_per_lease=1)
    running.engine.step_gate = asyncio.Event()  # steps hold until the test lets them go
    client = running.client()
    lease = await client.acquire(ttl=60)
    first = asyncio.create_task(lease.run(steps.evaluate("1"), timeout=30))
    await running.engine.step_started.wait()
    second = asyncio.create_task(lease.run(steps.evaluate("2"), timeout=30))
    (held,) = running.broker.leases.active_leases()
    await until(lambda: held.runs_in_flight == 2)
    with pytest.raises(ResourceExhaustedError) as refused:
        await lease.run(steps.evaluate("3"), timeout=30)
    assert refused.value.limit == "runs_waiting_per_lease"
    running.engine.step_gate.set()
    assert (await first).ok and (await second).ok
    await lease.release()


async def test_a_deadline_beyond_the_maximum_run_time_is_cut_to_it(start: Any) -> None:
    running = await start(max_run_timeout_s=0.5)
    running.engine.step_gate = asyncio.Event()  # the step never finishes on its own
    lease = await running.client().acquire(ttl=60)
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        await lease.run(steps.evaluate("1"), timeout=60)
    assert time.monotonic() - started < 30  # the broker's bound ended it, not the caller's
    assert running.engine.all_sessions[0].resets == 1  # and the work was stopped
    await lease.release()


async def test_concurrent_rpcs_are_bounded(start: Any) -> None:
    running = await start(max_concurrent_rpcs=2, capacity=1, queue_limit=8)
    client = running.client()
    held = await client.acquire(ttl=60)
    # Two Acquires wait for the one slot: the server's two RPC places are taken.
    waiting = [asyncio.create_task(client.acquire(timeout=30)) for _ in range(2)]
    await until(lambda: running.broker.leases.queued_count == 2)
    with pytest.raises(ResourceExhaustedError):  # any third call, even a Release
        await held.release()
    for task in waiting:  # the waiters give up: their places free, nothing was granted
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    await until(lambda: running.broker.leases.queued_count == 0)
    assert (await held.release()).released_now
    assert (await client.status()).active_leases == 0


@pytest.mark.parametrize(
    ("context", "field"),
    [
        (pb.ContextOptions(proxy=pb.Proxy(server="http://p.test:1", password="x" * 2000)), "password"),
        (pb.ContextOptions(proxy=pb.Proxy(server="http://p.test:1", username="x" * 300)), "username"),
        (pb.ContextOptions(extra_http_headers={"X-aws-ec2-metadata-token": "t"}), "extra_http_headers"),
        (pb.ContextOptions(user_agent="x" * 2000), "user_agent"),
    ],
)  # fmt: skip
async def test_string_fields_are_bounded(
    start: Any, context: pb.ContextOptions, field: str
) -> None:
    running = await start(allow_client_proxies=True)
    with pytest.raises(InvalidArgumentError) as bad:
        await running.client().acquire(context=context)
    assert field in bad.value.violations[0].field
    assert running.engine.all_sessions == []


async def test_deeply_nested_evaluate_arguments_are_refused(start: Any) -> None:
    running = await start()
    lease = await running.client().acquire(ttl=60)
    deep = "[" * 100 + "]" * 100
    request = pb.RunRequest(
        lease_id=lease.id,
        token=lease.grant.token,
        steps=[pb.Step(evaluate=pb.Evaluate(expression="(x) => x", arg_json=deep))],
    )
    with pytest.raises(aio.AioRpcError) as bad:
        await running.client().stub.Run(request).read()
    assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "nested deeper than 64" in (bad.value.details() or "")
    deepest = "[" * 100_000  # would overflow a recursive parser
    request.steps[0].evaluate.arg_json = deepest
    with pytest.raises(aio.AioRpcError) as worse:
        await running.client().stub.Run(request).read()
    assert worse.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    await lease.release()


async def test_tombstones_keep_only_the_outcome() -> None:
    engine = FakeEngine()
    # The real clock: a cancelled timer lets go of its callback (the fake clock keeps them).
    table = LeaseTable({EngineName.CHROMIUM: engine}, LoopClock(), Limits(capacity=500))
    secret = "p" * 200_000  # a large credential, as in a context's proxy
    spec = LeaseSpec(
        EngineName.CHROMIUM,
        Isolation.CONTEXT,
        60,
        60,
        ContextOptions(proxy=ProxySettings("http://proxy.test:3128", "user", secret)),
    )
    leases = [await table.acquire(spec, None) for _ in range(500)]
    refs = [weakref.ref(lease) for lease in leases]
    for lease in leases:
        table.release(lease, ReleaseReason.CLIENT_RELEASE)
    await table.wait_all_closed()
    del leases, lease
    gc.collect()
    assert all(ref() is None for ref in refs), "a released lease is still held"
    tomb = table._tombstones._kept[next(iter(table._tombstones._kept))]
    assert isinstance(tomb, Tombstone) and not hasattr(tomb, "__dict__")  # slots: fixed size
    assert all(not isinstance(value, (Lease, LeaseSpec, ContextOptions)) for value in (
        getattr(tomb, name) for name in tomb.__slots__
    ))  # fmt: skip


async def test_an_acquire_that_never_got_its_lease_leaves_no_record(start: Any) -> None:
    running = await start()
    running.engine.fail_next_open = Unavailable("the browser did not start")
    client = running.client()
    with pytest.raises(UnavailableError):
        await client.acquire()
    assert len(running.broker.leases._tombstones) == 0
    with pytest.raises(aio.AioRpcError) as unknown:
        await client.stub.Release(pb.ReleaseRequest(lease_id="lease-x", token="t"))
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND


class SlowGrant(LeaseObserver):
    """Holds the broker between granting a lease and answering, past the caller's deadline."""

    def lease_granted(self, lease: Lease) -> None:
        time.sleep(0.5)


async def test_a_lease_granted_as_the_callers_deadline_passed_is_released_at_once(
    start: Any,
) -> None:
    running = await start()
    running.broker.observers.add(SlowGrant())
    client = running.client()
    with pytest.raises(aio.AioRpcError) as late:
        await client.stub.Acquire(pb.AcquireRequest(), timeout=0.2)
    assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    await until(lambda: running.broker.leases.active_count == 0)
    (session,) = running.engine.all_sessions
    await until(lambda: session.closed == 1)


@pytest.mark.parametrize("deadline", [0.3, None])
async def test_an_open_that_hangs_ends_with_a_clear_status_and_a_free_slot(
    start: Any, deadline: float | None
) -> None:
    """The deadline passing during a cold open answers DEADLINE_EXCEEDED; with no deadline, the
    broker's own bound answers UNAVAILABLE. Either way nothing stays open or held."""
    running = await start(session_open_timeout_s=0.3, capacity=1)
    running.engine.open_gate = asyncio.Event()  # the browser never answers
    client = running.client()
    with pytest.raises(aio.AioRpcError) as failed:
        await client.stub.Acquire(pb.AcquireRequest(), timeout=deadline)
    expected = grpc.StatusCode.DEADLINE_EXCEEDED if deadline else grpc.StatusCode.UNAVAILABLE
    assert failed.value.code() is expected, failed.value
    assert running.broker.leases.active_count == 0  # the slot is free again
    running.engine.open_gate.set()
    assert (await client.acquire(timeout=10)).id  # and usable
    await running.broker.leases.wait_all_closed()
    for lease in running.broker.leases.active_leases():
        running.broker.leases.release(lease, ReleaseReason.CLIENT_RELEASE)

"""The drain (SIGTERM): no new leases, the leases go on until they end or the drain's deadline
passes, then those left end `drained`, each exactly once (docs/operations.md#shutdown-and-the-drain).
The three-node test with real browsers is tests/integration/test_drain.py."""

from __future__ import annotations

import asyncio
import time
from typing import cast

import pytest

from broker.cluster.node import ClusterNode
from broker.cluster.records import NodeRecord
from broker.cluster.routing import Router
from broker.cluster.store import ClusterStore
from broker.common.clock import LoopClock
from broker.errors import LeaseEnded, Unavailable
from broker.leases.endings import Draining
from broker.leases.lease import LeaseSpec, ReleaseReason
from broker.leases.limits import Limits
from broker.leases.runs import Run
from broker.leases.table import LeaseTable
from broker.model.options import EngineName, Isolation
from broker.model.steps.base import OnCancel, RunOptions, Step
from broker.model.steps.reading import Evaluate
from broker.runtime.settings import Settings
from tests.fakes import FakeEngine, ReleaseRecorder

SPEC = LeaseSpec(EngineName.CHROMIUM, Isolation.CONTEXT, ttl_s=600, idle_timeout_s=600)
STEPS = (Step(Evaluate("1"), 0.0),)


def table(capacity: int = 2) -> tuple[LeaseTable, FakeEngine, ReleaseRecorder]:
    engine, recorder = FakeEngine(), ReleaseRecorder()
    leases = LeaseTable(
        {EngineName.CHROMIUM: engine},
        LoopClock(),
        Limits(capacity=capacity, queue_limit=4, ttl_jitter_fraction=0.0),
        recorder,
    )
    return leases, engine, recorder


async def run_once(leases: LeaseTable, lease_id: str, token: str) -> None:
    run = Run(leases, leases.get(lease_id, token), RunOptions(STEPS, OnCancel.KEEP_LEASE), 5, 5)
    run.start()
    async for outcome in run.results():
        assert outcome.ok
    run.close()


async def test_leases_go_on_during_the_drain_and_those_left_at_its_deadline_end_drained() -> None:
    leases, engine, recorder = table()
    finishing = await leases.acquire(SPEC, None)
    left = await leases.acquire(SPEC, None)
    drain = asyncio.create_task(leases.drain(grace_s=0, deadline_s=0.5))
    await asyncio.sleep(0)
    assert leases.draining
    with pytest.raises(Draining):  # no new lease, at once
        await leases.acquire(SPEC, None)
    # Both leases still work, and one that is released meanwhile ends as it would.
    await run_once(leases, finishing.id, finishing.token)
    await run_once(leases, left.id, left.token)
    outcome, _ = leases.release_by_client(finishing.id, finishing.token)
    assert outcome.released_now and outcome.reason is ReleaseReason.CLIENT_RELEASE
    assert not drain.done()
    await asyncio.wait_for(drain, 10)
    assert left.released is not None and left.released.reason is ReleaseReason.DRAINED
    assert recorder.released == [
        (finishing.id, "client_release"),
        (left.id, "drained"),
    ]
    # A late Release gets the first outcome, and ends nothing again.
    late, ended = leases.release_by_client(left.id, left.token)
    assert (late.reason, late.released_now, ended) == (ReleaseReason.DRAINED, False, None)
    assert late.released_at == left.released.released_at
    assert engine.open_sessions == set() and leases.owned_sessions() == set()


async def test_the_drain_ends_as_soon_as_its_last_lease_has() -> None:
    leases, _, recorder = table()
    lease = await leases.acquire(SPEC, None)
    started = time.monotonic()
    drain = asyncio.create_task(leases.drain(grace_s=0, deadline_s=60))
    await asyncio.sleep(0.05)
    leases.release(lease, ReleaseReason.TTL_EXPIRED)
    await asyncio.wait_for(drain, 10)
    assert time.monotonic() - started < 30  # (not its 60 s deadline)
    assert recorder.released == [(lease.id, "ttl_expired")]


async def test_a_drain_with_nothing_to_wait_for_returns_at_once() -> None:
    leases, _, _ = table()
    await asyncio.wait_for(leases.drain(grace_s=10, deadline_s=60), 10)
    assert leases.draining


async def test_a_run_in_progress_at_the_deadline_gets_the_grace_then_its_lease_ends_drained() -> (
    None
):
    leases, engine, recorder = table()
    lease = await leases.acquire(SPEC, None)
    engine.step_gate = asyncio.Event()
    run = Run(leases, lease, RunOptions(STEPS, OnCancel.KEEP_LEASE), 30, 30)
    run.start()
    await engine.step_started.wait()
    drain = asyncio.create_task(leases.drain(grace_s=30, deadline_s=0.2))
    await asyncio.sleep(0.5)  # past the deadline: the Run is in its grace
    assert lease.released is None and not drain.done()
    engine.step_gate.set()
    async for outcome in run.results():
        assert outcome.ok
    run.close()
    await asyncio.wait_for(drain, 10)
    assert recorder.released == [(lease.id, "drained")]


async def test_without_a_drain_deadline_leases_end_shutdown_as_before() -> None:
    leases, _, recorder = table()
    lease = await leases.acquire(SPEC, None)
    await asyncio.wait_for(leases.drain(grace_s=0), 10)
    assert recorder.released == [(lease.id, "shutdown")]


async def test_queued_acquires_fail_draining_at_once() -> None:
    leases, _, _ = table(capacity=1)
    await leases.acquire(SPEC, None)
    waiting = asyncio.create_task(leases.acquire(SPEC, None))
    await asyncio.sleep(0)
    assert leases.queued_count == 1
    leases.begin_drain()
    with pytest.raises(Draining) as raised:
        await waiting
    # Draining is UNAVAILABLE to a client of a single broker, as before.
    assert isinstance(raised.value, Unavailable)
    assert str(raised.value) == "broker is shutting down"


def _record(node_id: str, used: int = 0, draining: bool = False) -> NodeRecord:
    return NodeRecord(node_id, f"{node_id}:1", 4, used, 0, ("chromium",), used, 10, draining)


def test_placement_skips_draining_nodes_and_a_draining_node_has_no_room_itself() -> None:
    leases, _, _ = table()
    node = ClusterNode(
        cast(ClusterStore, None), leases, "here:1", [EngineName.CHROMIUM], 1.0, 5.0, 60.0
    )
    router = Router(node, leases, queue_limit=4)
    # The emptiest node is draining: the Acquire goes to the next emptiest.
    node.nodes = (_record("a", draining=True), _record("b", used=2), _record("c", used=3))
    target = node.place(EngineName.CHROMIUM)
    assert target is not None and target.node_id == "b"
    node.nodes = (_record("a", draining=True),)
    assert node.place(EngineName.CHROMIUM) is None
    assert router.room_here()
    leases.begin_drain()
    assert not router.room_here()


def test_drain_timeout_is_a_setting_and_zero_turns_the_drain_off() -> None:
    defaults = Settings.model_validate({})
    assert (defaults.drain_timeout_s, defaults.shutdown_grace_s) == (15.0, 10.0)
    assert Settings.model_validate({"drain_timeout_s": 0}).drain_timeout_s == 0
    with pytest.raises(ValueError, match="drain_timeout_s"):
        Settings.model_validate({"drain_timeout_s": -1})


async def test_a_run_cut_at_the_deadline_tells_its_client_the_lease_ended_drained() -> None:
    leases, engine, recorder = table()
    lease = await leases.acquire(SPEC, None)
    engine.step_gate = asyncio.Event()  # (never set: the step runs until it is stopped)
    run = Run(leases, lease, RunOptions(STEPS, OnCancel.KEEP_LEASE), 30, 30)
    run.start()
    await engine.step_started.wait()
    await asyncio.wait_for(leases.drain(grace_s=0, deadline_s=0.2), 10)
    with pytest.raises(LeaseEnded) as ended:
        async for _ in run.results():
            pass
    run.close()
    assert ended.value.reason == "drained"
    assert recorder.released == [(lease.id, "drained")]
    assert engine.open_sessions == set()

"""The error contract, end to end: a real grpc.aio server over a fake engine, called through the
generated stub and through the SDK. Every status of the table, with its rich details, and nothing
left behind after any of them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from broker.daemon.server import serve
from broker.leases.events import LeaseObserver
from broker.leases.lease import ReleaseReason
from broker.model.options import EngineName
from broker.model.steps.checks import MAX_VALUE_CHARS
from broker.runtime.settings import Settings
from broker.runtime.wiring import Broker
from browserbroker import (
    AsyncBrokerClient,
    AsyncLease,
    DeadlineExceededError,
    Engine,
    EngineUnavailableError,
    InvalidArgumentError,
    Isolation,
    LeaseEndedError,
    LeaseGrant,
    LeaseNotFoundError,
    OnCancel,
    PermissionDeniedError,
    QueueFullError,
    ResourceExhaustedError,
    SessionCrashedError,
    UnauthenticatedError,
    UnavailableError,
    steps,
)
from browserbroker.errors import BrokerError, from_rpc_error
from browserbroker.v1 import broker_pb2 as pb
from browserbroker.v1 import broker_pb2_grpc
from tests.fakes import FakeEngine, FakeSession

MAX_TTL_S = 3600
MAX_STEPS = 100
SAFETY_S = 10.0  # only a backstop against a hang; nothing is ordered by it


class QueueWatch(LeaseObserver):
    """Wakes the test whenever the broker's queue changes (the server runs in this event loop)."""

    def __init__(self) -> None:
        self.changed = asyncio.Event()

    def lease_queued(self, queued: int) -> None:
        self.changed.set()


@dataclass
class Harness:
    broker: Broker
    engine: FakeEngine
    disabled: FakeEngine
    watch: QueueWatch
    client: AsyncBrokerClient

    @property
    def stub(self) -> broker_pb2_grpc.BrowserBrokerServiceAsyncStub:
        return self.client.stub

    async def queued(self, count: int) -> None:
        """Until exactly `count` Acquire calls wait in the broker's queue."""
        leases = self.broker.leases
        async with asyncio.timeout(SAFETY_S):
            while leases.queued_count != count:
                self.watch.changed.clear()
                await self.watch.changed.wait()

    async def lease(self) -> pb.AcquireResponse:
        return await self.stub.Acquire(
            pb.AcquireRequest(ttl=Duration(seconds=60)), timeout=SAFETY_S
        )

    async def release(self, grant: pb.AcquireResponse) -> pb.ReleaseResponse:
        request = pb.ReleaseRequest(lease_id=grant.lease_id, token=grant.token)
        return await self.stub.Release(request, timeout=SAFETY_S)

    async def assert_nothing_leaked(self) -> None:
        leases = self.broker.leases
        await leases.wait_all_closed()
        assert leases.active_count == 0, [lease.id for lease in leases.active_leases()]
        assert leases.queued_count == 0
        assert self.engine.open_sessions == set()
        assert self.disabled.open_sessions == set()
        assert all(session.closed == 1 for session in self.engine.all_sessions)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    settings = Settings.model_validate(
        {
            "listen": "127.0.0.1:0",
            "warm_pool_size": 0,
            "log_level": "WARNING",
            "capacity": 1,
            "queue_limit": 1,
            "engines": [EngineName.CHROMIUM, EngineName.FIREFOX],
            "max_ttl_s": MAX_TTL_S,
            "max_steps_per_run": MAX_STEPS,
            "shutdown_grace_s": 0,
            "drain_timeout_s": 0,
        }
    )
    engine = FakeEngine()
    disabled = FakeEngine(EngineName.FIREFOX, available=False)
    watch = QueueWatch()
    broker = Broker(
        settings,
        engines={EngineName.CHROMIUM: engine, EngineName.FIREFOX: disabled},
        observers=[watch],
    )
    stop = asyncio.Event()
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(settings, stop=stop, on_ready=ready.set_result, broker=broker))
    waiting: set[asyncio.Future[Any]] = {task, ready}
    done, _ = await asyncio.wait(waiting, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    client = AsyncBrokerClient(f"127.0.0.1:{ready.result()}")
    h = Harness(broker, engine, disabled, watch, client)
    try:
        yield h
        await h.assert_nothing_leaked()
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        await client.close()


# ------------------------------------------------------------------------------------ helpers


def status_details(error: aio.AioRpcError) -> status_pb2.Status:
    trailers: Any = error.trailing_metadata() or ()
    raw = next((value for key, value in trailers if key == "grpc-status-details-bin"), None)
    assert isinstance(raw, bytes), "no google.rpc.Status in the trailers"
    status = status_pb2.Status.FromString(raw)
    assert status.code == error.code().value[0]
    return status


def violations(error: aio.AioRpcError) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for detail in status_details(error).details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            found += [(v.field, v.description) for v in bad.field_violations]
    return found


def error_info(error: aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    for detail in status_details(error).details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    raise AssertionError("no google.rpc.ErrorInfo in the details")


def retry_info(error: aio.AioRpcError) -> error_details_pb2.RetryInfo:
    for detail in status_details(error).details:
        retry = error_details_pb2.RetryInfo()
        if detail.Unpack(retry):
            return retry
    raise AssertionError("no google.rpc.RetryInfo in the details")


async def run_error(h: Harness, request: pb.RunRequest) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as raised:
        async for _ in h.stub.Run(request, timeout=SAFETY_S):
            pass
    return raised.value


def assert_names_field(error: aio.AioRpcError, field: str) -> None:
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error
    assert field in (error.details() or ""), error.details()
    fields = [f for f, _ in violations(error)]
    assert field in fields, fields
    mapped = from_rpc_error(error)
    assert type(mapped) is InvalidArgumentError
    assert field in [v.field for v in mapped.violations]


def d(seconds: int = 0, nanos: int = 0) -> Duration:
    return Duration(seconds=seconds, nanos=nanos)


# ------------------------------------------------------------------------ INVALID_ARGUMENT


ACQUIRE_CASES: list[tuple[str, Callable[[], pb.AcquireRequest]]] = [
    ("ttl", lambda: pb.AcquireRequest(ttl=d(-5))),
    ("ttl", lambda: pb.AcquireRequest(ttl=d(MAX_TTL_S + 1))),
    ("ttl", lambda: pb.AcquireRequest(ttl=d(0, 1000))),  # a microsecond: below the 1 s minimum
    ("idle_timeout", lambda: pb.AcquireRequest(idle_timeout=d(10**9))),
    ("idle_timeout", lambda: pb.AcquireRequest(idle_timeout=d(-1))),
    ("engine", lambda: pb.AcquireRequest(engine=pb.Engine.ValueType(99))),
    ("isolation", lambda: pb.AcquireRequest(isolation=pb.Isolation.ValueType(42))),
    (
        "context.viewport",
        lambda: pb.AcquireRequest(
            context=pb.ContextOptions(viewport=pb.Viewport(width=0, height=600))
        ),
    ),
    (
        "context.viewport",
        lambda: pb.AcquireRequest(
            context=pb.ContextOptions(viewport=pb.Viewport(width=800, height=10_001))
        ),
    ),
    (
        "context.locale",
        lambda: pb.AcquireRequest(context=pb.ContextOptions(locale="not a locale!")),
    ),
    (
        "context.timezone_id",
        lambda: pb.AcquireRequest(context=pb.ContextOptions(timezone_id="Mars/Olympus_Mons")),
    ),
    (
        "context.timezone_id",
        lambda: pb.AcquireRequest(context=pb.ContextOptions(timezone_id="../../etc/passwd")),
    ),
    (
        "context.proxy.server",
        lambda: pb.AcquireRequest(context=pb.ContextOptions(proxy=pb.Proxy(server="nope"))),
    ),
    (
        "context.proxy.server",
        lambda: pb.AcquireRequest(
            context=pb.ContextOptions(proxy=pb.Proxy(server="ftp://proxy:21"))
        ),
    ),
    (
        "context.user_agent",
        lambda: pb.AcquireRequest(context=pb.ContextOptions(user_agent="u" * 1025)),
    ),
    ("labels", lambda: pb.AcquireRequest(labels={f"k{i}": "v" for i in range(17)})),
    ("labels['bad key!']", lambda: pb.AcquireRequest(labels={"bad key!": "v"})),
]


@pytest.mark.parametrize(("field", "build"), ACQUIRE_CASES)
async def test_malformed_acquire_names_the_field(
    harness: Harness, field: str, build: Callable[[], pb.AcquireRequest]
) -> None:
    with pytest.raises(aio.AioRpcError) as raised:
        await harness.stub.Acquire(build(), timeout=SAFETY_S)
    assert_names_field(raised.value, field)
    assert harness.engine.all_sessions == []  # refused before anything was opened


async def test_every_bad_field_is_named_at_once(harness: Harness) -> None:
    request = pb.AcquireRequest(
        ttl=d(-1), idle_timeout=d(10**9), context=pb.ContextOptions(locale="!!")
    )
    with pytest.raises(aio.AioRpcError) as raised:
        await harness.stub.Acquire(request, timeout=SAFETY_S)
    fields = {f for f, _ in violations(raised.value)}
    assert fields == {"ttl", "idle_timeout", "context.locale"}


def _steps(*items: pb.Step) -> list[pb.Step]:
    return list(items)


RUN_CASES: list[tuple[str, Callable[[], list[pb.Step]]]] = [
    ("steps", _steps),  # no steps at all
    ("steps[0]", lambda: [pb.Step()]),  # a step with no action
    ("steps", lambda: [steps.evaluate("1")] * (MAX_STEPS + 1)),
    ("steps[0].click.selector", lambda: [steps.click("")]),
    ("steps[0].click.selector", lambda: [steps.click("   ")]),
    ("steps[0].click.selector", lambda: [steps.click("div[data-x='1'")]),
    ("steps[0].get_text.selector", lambda: [steps.text("a:has(b")]),
    ("steps[0].wait_for_selector.selector", lambda: [steps.wait_for_selector("a[href='x]")]),
    ("steps[0].goto.url", lambda: [steps.goto("nope")]),
    ("steps[0].goto.url", lambda: [steps.goto("javascript:alert(1)")]),
    ("steps[0].goto.url", lambda: [steps.goto("http://:80/")]),  # no host (http:///x has one)
    ("steps[1].goto.url", lambda: [steps.evaluate("1"), steps.goto("")]),
    (
        "steps[0].goto.wait_until",
        lambda: [steps.goto("https://example.org/", wait_until="whenever")],
    ),
    ("steps[0].wait_for_load_state.state", lambda: [steps.wait_for_load_state("commit")]),
    (
        "steps[0].evaluate.arg_json",
        lambda: [pb.Step(evaluate=pb.Evaluate(expression="x => x", arg_json="{"))],
    ),
    ("steps[0].evaluate.expression", lambda: [steps.evaluate("")]),
    ("steps[0].fill.value", lambda: [steps.fill("#q", "x" * (MAX_VALUE_CHARS + 1))]),
    ("steps[0].press.key", lambda: [steps.press("#q", "")]),
    ("steps[0].timeout", lambda: [pb.Step(get_content=pb.GetContent(), timeout=d(-3))]),
]


@pytest.mark.parametrize(("field", "build"), RUN_CASES)
async def test_malformed_run_names_the_field(
    harness: Harness, field: str, build: Callable[[], list[pb.Step]]
) -> None:
    grant = await harness.lease()
    request = pb.RunRequest(lease_id=grant.lease_id, token=grant.token, steps=build())
    assert_names_field(await run_error(harness, request), field)
    (session,) = harness.engine.all_sessions
    assert session.executed == []  # nothing reached the browser
    assert (await harness.release(grant)).released_now  # the lease was left intact


async def test_bad_on_cancel_value(harness: Harness) -> None:
    grant = await harness.lease()
    request = pb.RunRequest(
        lease_id=grant.lease_id,
        token=grant.token,
        steps=[steps.evaluate("1")],
        on_cancel=pb.OnCancel.ValueType(9),
    )
    assert_names_field(await run_error(harness, request), "on_cancel")
    await harness.release(grant)


async def test_fill_value_at_the_limit_is_accepted(harness: Harness) -> None:
    grant = await harness.lease()
    request = pb.RunRequest(
        lease_id=grant.lease_id, token=grant.token, steps=[steps.fill("#q", "x" * MAX_VALUE_CHARS)]
    )
    results = [message.step async for message in harness.stub.Run(request, timeout=SAFETY_S)]
    assert [r.ok for r in results] == [True]
    await harness.release(grant)


@pytest.mark.parametrize(
    ("lease_id", "token", "field"),
    [
        ("", "t", "lease_id"),
        ("lease-x", "", "token"),
        ("l" * 129, "t", "lease_id"),
        ("lease-x", "t" * 257, "token"),
    ],
)
async def test_bad_lease_reference(harness: Harness, lease_id: str, token: str, field: str) -> None:
    with pytest.raises(aio.AioRpcError) as released:
        await harness.stub.Release(
            pb.ReleaseRequest(lease_id=lease_id, token=token), timeout=SAFETY_S
        )
    assert_names_field(released.value, field)
    with pytest.raises(aio.AioRpcError) as kept:
        await harness.stub.KeepAlive(
            pb.KeepAliveRequest(lease_id=lease_id, token=token), timeout=SAFETY_S
        )
    assert_names_field(kept.value, field)


@pytest.mark.parametrize(
    ("lease_id", "token", "field"),
    [
        ("", "t", "lease_id"),
        ("lease-x", "", "token"),
        ("l" * 129, "t", "lease_id"),
        ("lease-x", "t" * 257, "token"),
    ],
)
async def test_run_checks_the_lease_reference_like_release(
    harness: Harness, lease_id: str, token: str, field: str
) -> None:
    # The same malformed reference gets the same answer from every RPC that takes one.
    request = pb.RunRequest(lease_id=lease_id, token=token, steps=[steps.evaluate("1")])
    assert_names_field(await run_error(harness, request), field)


@pytest.mark.parametrize("ttl", [d(-1), d(MAX_TTL_S + 1)])
async def test_keep_alive_with_bad_ttl(harness: Harness, ttl: Duration) -> None:
    grant = await harness.lease()
    request = pb.KeepAliveRequest(lease_id=grant.lease_id, token=grant.token, ttl=ttl)
    with pytest.raises(aio.AioRpcError) as raised:
        await harness.stub.KeepAlive(request, timeout=SAFETY_S)
    assert_names_field(raised.value, "ttl")
    await harness.release(grant)


async def test_sdk_invalid_argument_error_lists_violations(harness: Harness) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        await harness.client.acquire(ttl=-1, idle_timeout=10**9)
    assert raised.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in raised.value.violations} == {"ttl", "idle_timeout"}
    lease = await harness.client.acquire(ttl=60)
    with pytest.raises(InvalidArgumentError) as bad_step:
        await lease.run(steps.goto("javascript:alert(1)"))
    assert [v.field for v in bad_step.value.violations] == ["steps[0].goto.url"]
    await lease.release()


# ------------------------------------------------------------- NOT_FOUND, PERMISSION_DENIED


async def test_unknown_lease_is_not_found(harness: Harness) -> None:
    lease_id, token = "lease-never-issued", "whatever"
    with pytest.raises(aio.AioRpcError) as released:
        await harness.stub.Release(
            pb.ReleaseRequest(lease_id=lease_id, token=token), timeout=SAFETY_S
        )
    with pytest.raises(aio.AioRpcError) as kept:
        await harness.stub.KeepAlive(
            pb.KeepAliveRequest(lease_id=lease_id, token=token), timeout=SAFETY_S
        )
    ran = await run_error(
        harness, pb.RunRequest(lease_id=lease_id, token=token, steps=[steps.evaluate("1")])
    )
    for error in (released.value, kept.value, ran):
        assert error.code() is grpc.StatusCode.NOT_FOUND
        assert lease_id in (error.details() or "")
        assert type(from_rpc_error(error)) is LeaseNotFoundError
    grant = LeaseGrant(
        lease_id=lease_id,
        token=token,
        expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        engine=Engine.CHROMIUM,
        isolation=Isolation.CONTEXT,
        ttl_s=60.0,
        idle_timeout_s=60.0,
        warm=False,
        queue_wait_s=0.0,
    )
    never_issued = AsyncLease(harness.client, grant)
    with pytest.raises(LeaseNotFoundError):
        await never_issued.release()
    with pytest.raises(LeaseNotFoundError):
        await never_issued.keep_alive()
    with pytest.raises(LeaseNotFoundError):
        await never_issued.run(steps.evaluate("1"))


async def test_wrong_token_is_permission_denied(harness: Harness) -> None:
    grant = await harness.lease()
    lease_id = grant.lease_id
    with pytest.raises(aio.AioRpcError) as released:
        await harness.stub.Release(
            pb.ReleaseRequest(lease_id=lease_id, token="forged"), timeout=SAFETY_S
        )
    with pytest.raises(aio.AioRpcError) as kept:
        await harness.stub.KeepAlive(
            pb.KeepAliveRequest(lease_id=lease_id, token="forged"), timeout=SAFETY_S
        )
    ran = await run_error(
        harness, pb.RunRequest(lease_id=lease_id, token="forged", steps=[steps.evaluate("1")])
    )
    for error in (released.value, kept.value, ran):
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED
        assert grant.token not in (error.details() or "")  # never echo the secret
        assert type(from_rpc_error(error)) is PermissionDeniedError
    (session,) = harness.engine.all_sessions
    assert session.executed == [] and session.closed == 0  # the forged calls changed nothing
    # Through the SDK, and also after the lease has ended (the tombstone still checks the token).
    lease = AsyncLease(harness.client, LeaseGrant.from_pb(grant))
    forged = AsyncLease(harness.client, dataclasses.replace(lease.grant, token="forged"))
    with pytest.raises(PermissionDeniedError):
        await forged.keep_alive()
    assert (await lease.release()).released_now
    with pytest.raises(PermissionDeniedError):
        await forged.release()


# ------------------------------------------------------------------ FAILED_PRECONDITION


async def test_run_on_a_released_lease_is_failed_precondition_with_the_reason(
    harness: Harness,
) -> None:
    grant = await harness.lease()
    await harness.release(grant)
    error = await run_error(
        harness,
        pb.RunRequest(lease_id=grant.lease_id, token=grant.token, steps=[steps.evaluate("1")]),
    )
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(error)
    assert info.reason == "LEASE_ENDED" and info.domain == "browserbroker.v1"
    assert info.metadata["release_reason"] == "client_release"
    assert info.metadata["lease_id"] == grant.lease_id
    assert "client_release" in (error.details() or "")
    mapped = from_rpc_error(error)
    assert isinstance(mapped, LeaseEndedError) and mapped.reason == "client_release"
    with pytest.raises(aio.AioRpcError) as kept:
        await harness.stub.KeepAlive(
            pb.KeepAliveRequest(lease_id=grant.lease_id, token=grant.token), timeout=SAFETY_S
        )
    assert kept.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(kept.value).metadata["release_reason"] == "client_release"
    # The SDK raises the typed error with the reason.
    lease = AsyncLease(harness.client, LeaseGrant.from_pb(grant))
    with pytest.raises(LeaseEndedError) as ended:
        await lease.run(steps.evaluate("1"))
    assert ended.value.reason == "client_release"
    assert ended.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert harness.engine.all_sessions[0].executed == []


async def test_run_on_an_idled_out_lease_reports_that_reason(harness: Harness) -> None:
    grant = await harness.lease()
    (lease,) = harness.broker.leases.active_leases()
    harness.broker.leases.release(lease, ReleaseReason.IDLE_TIMEOUT)  # as the idle timer would
    lease_sdk = AsyncLease(harness.client, LeaseGrant.from_pb(grant))
    with pytest.raises(LeaseEndedError) as ended:
        await lease_sdk.run(steps.evaluate("1"))
    assert ended.value.reason == "idle_timeout"


async def test_release_twice_answers_ok_with_the_first_outcome(harness: Harness) -> None:
    grant = await harness.lease()
    first = await harness.release(grant)
    second = await harness.release(grant)
    assert first.released_now and not second.released_now
    assert second.reason == first.reason == pb.RELEASE_REASON_CLIENT_RELEASE
    assert second.released_at == first.released_at
    lease = AsyncLease(harness.client, LeaseGrant.from_pb(grant))
    third = await lease.release()
    assert not third.released_now and third.reason == "client_release"
    assert third.released_at == first.released_at.ToDatetime()
    (session,) = harness.engine.all_sessions
    assert session.closed == 1


@pytest.mark.parametrize(
    ("engine", "detail"),
    [(pb.ENGINE_FIREFOX, "switched off"), (pb.ENGINE_CAMOUFOX, "not enabled")],
)
async def test_unavailable_engine_is_failed_precondition(
    harness: Harness, engine: pb.Engine.ValueType, detail: str
) -> None:
    with pytest.raises(aio.AioRpcError) as raised:
        await harness.stub.Acquire(pb.AcquireRequest(engine=engine), timeout=SAFETY_S)
    error = raised.value
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(error)
    assert info.reason == "ENGINE_UNAVAILABLE" and detail in info.metadata["detail"]
    assert type(from_rpc_error(error)) is EngineUnavailableError
    with pytest.raises(EngineUnavailableError):
        await harness.client.acquire(engine=Engine(engine))
    assert harness.disabled.all_sessions == []


# ------------------------------------------------------------------ RESOURCE_EXHAUSTED


async def test_full_queue_is_resource_exhausted_with_retry_info(harness: Harness) -> None:
    held = await harness.lease()
    waiting = asyncio.create_task(harness.client.acquire(ttl=60, timeout=SAFETY_S))
    await harness.queued(1)
    with pytest.raises(aio.AioRpcError) as raised:
        await harness.stub.Acquire(pb.AcquireRequest(), timeout=SAFETY_S)
    error = raised.value
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    delay = retry_info(error).retry_delay
    assert delay.ToNanoseconds() > 0
    quota = [
        detail
        for detail in status_details(error).details
        if detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR)
    ]
    assert len(quota) == 1
    mapped = from_rpc_error(error)
    assert type(mapped) is QueueFullError
    assert mapped.retry_after_s == pytest.approx(delay.ToNanoseconds() / 1e9)
    with pytest.raises(QueueFullError) as sdk:
        await harness.client.acquire()
    assert sdk.value.retry_after_s is not None and sdk.value.retry_after_s > 0
    assert harness.broker.leases.queued_count == 1  # the refused calls never joined the queue
    await harness.release(held)
    lease = await waiting  # the waiter got the freed slot
    await lease.release()
    assert len(harness.engine.all_sessions) == 2


# ------------------------------------------------------------------ DEADLINE_EXCEEDED


async def test_queued_acquire_past_its_deadline_leaves_the_queue(harness: Harness) -> None:
    held = await harness.lease()
    with pytest.raises(DeadlineExceededError):
        await harness.client.acquire(timeout=0.2)  # a short real deadline: the thing under test
    await harness.queued(0)
    await harness.release(held)
    assert harness.broker.leases.active_count == 0  # nobody was handed the freed slot
    assert len(harness.engine.all_sessions) == 1


@pytest.mark.parametrize("on_cancel", [OnCancel.KEEP_LEASE, OnCancel.RELEASE_LEASE])
async def test_run_past_its_deadline_stops_the_work_as_the_policy_says(
    harness: Harness, on_cancel: OnCancel
) -> None:
    harness.engine.step_gate = asyncio.Event()  # the step never finishes on its own
    lease = await harness.client.acquire(ttl=60)
    (held,) = harness.broker.leases.active_leases()
    with pytest.raises(DeadlineExceededError):
        await lease.run(steps.evaluate("1"), timeout=0.3, on_cancel=on_cancel)  # a real deadline
    assert harness.engine.step_started.is_set()  # the work was under way in the "browser"
    if held.run_tasks:  # the server's side of the Run ends by the same deadline
        await asyncio.wait(set(held.run_tasks))
    await harness.broker.leases.wait_all_closed()
    (session,) = harness.engine.all_sessions
    if on_cancel is OnCancel.KEEP_LEASE:
        assert session.resets == 1 and session.closed == 0 and held.released is None
        harness.engine.step_gate.set()
        assert (await lease.run(steps.evaluate("2"), timeout=SAFETY_S)).ok  # still usable
        assert (await lease.release()).released_now
    else:
        assert session.resets == 0 and session.closed == 1
        late = await lease.release()
        assert not late.released_now and late.reason == "run_cancelled"


# ----------------------------------------------------------------------------- ABORTED


async def test_crash_mid_run_is_aborted_with_the_lease_fate(harness: Harness) -> None:
    harness.engine.step_gate = asyncio.Event()
    lease = await harness.client.acquire(ttl=60)
    running = asyncio.create_task(lease.run(steps.evaluate("1"), timeout=SAFETY_S))
    await harness.engine.step_started.wait()
    (session,) = harness.engine.all_sessions
    assert isinstance(session, FakeSession)
    session.crash()
    with pytest.raises(SessionCrashedError) as crashed:
        await running
    assert crashed.value.code is grpc.StatusCode.ABORTED
    assert crashed.value.metadata["lease_fate"] == "released"
    assert crashed.value.metadata["cause"] == "engine_crashed"
    late = await lease.release()
    assert not late.released_now and late.reason == "engine_crashed"


# ----------------------------------------------------------------------------- UNAVAILABLE


async def test_acquire_during_drain_is_unavailable(harness: Harness) -> None:
    held = await harness.client.acquire(ttl=60)
    waiting = asyncio.create_task(harness.client.acquire(timeout=SAFETY_S))
    await harness.queued(1)
    await harness.broker.shutdown(grace_s=0)  # what SIGTERM does, while the server still answers
    with pytest.raises(UnavailableError) as refused_waiter:
        await waiting
    assert refused_waiter.value.code is grpc.StatusCode.UNAVAILABLE
    with pytest.raises(aio.AioRpcError) as raised:
        await harness.stub.Acquire(pb.AcquireRequest(), timeout=SAFETY_S)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    assert type(from_rpc_error(raised.value)) is UnavailableError
    with pytest.raises(UnavailableError):
        await harness.client.acquire()
    # The lease that was held ended with the shutdown; late calls are told so.
    with pytest.raises(LeaseEndedError) as ended:
        await held.run(steps.evaluate("1"))
    assert ended.value.reason == "shutdown"
    late = await held.release()
    assert not late.released_now and late.reason == "shutdown"
    assert len(harness.engine.all_sessions) == 1


# --------------------------------------------------------------------- the SDK mapping


@pytest.mark.parametrize(
    ("code", "metadata", "expected"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, {}, InvalidArgumentError),
        (grpc.StatusCode.NOT_FOUND, {}, LeaseNotFoundError),
        (grpc.StatusCode.PERMISSION_DENIED, {}, PermissionDeniedError),
        (grpc.StatusCode.FAILED_PRECONDITION, {"release_reason": "ttl_expired"}, LeaseEndedError),
        (grpc.StatusCode.FAILED_PRECONDITION, {"engine": "firefox"}, EngineUnavailableError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, {}, ResourceExhaustedError),
        (grpc.StatusCode.UNAUTHENTICATED, {}, UnauthenticatedError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, {}, DeadlineExceededError),
        (grpc.StatusCode.UNAVAILABLE, {}, UnavailableError),
        (grpc.StatusCode.ABORTED, {}, SessionCrashedError),
    ],
)
def test_sdk_maps_each_status_to_its_exception(
    code: grpc.StatusCode, metadata: dict[str, str], expected: type[BrokerError]
) -> None:
    reason = {"release_reason": "LEASE_ENDED", "engine": "ENGINE_UNAVAILABLE"}
    details: list[error_details_pb2.ErrorInfo] = [
        error_details_pb2.ErrorInfo(reason=reason[key], metadata=metadata) for key in metadata
    ]
    status = status_pb2.Status(code=code.value[0], message="m")
    for info in details:
        status.details.add().Pack(info)
    trailers = aio.Metadata(("grpc-status-details-bin", status.SerializeToString()))
    error = aio.AioRpcError(code, aio.Metadata(), trailers, details="m", debug_error_string="")
    mapped = from_rpc_error(error)
    assert type(mapped) is expected and mapped.code is code
    if expected is LeaseEndedError:
        assert isinstance(mapped, LeaseEndedError) and mapped.reason == "ttl_expired"

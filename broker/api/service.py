"""The gRPC servicer: authenticates, decodes requests, calls the core, encodes replies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from broker.api import decode, encode
from broker.api.auth import Authenticator
from broker.api.errors import streaming, unary
from broker.api.forwarding import Forwarded, Forwarder
from broker.cluster.routing import Ended, agreed
from broker.errors import AttachOnly, DeadlineExceeded, LimitExceeded
from broker.leases.endings import Draining
from broker.leases.lease import ReleaseOutcome, ReleaseReason
from broker.leases.runs import CancelCause, Run
from broker.leases.tenants import Tenant
from broker.model.attach import ATTACH_ONLY
from broker.runtime.wiring import Broker
from browserbroker.v1 import broker_pb2 as pb
from browserbroker.v1 import broker_pb2_grpc

Context = aio.ServicerContext[Any, Any]
TRACE_CHUNK_BYTES = 1024 * 1024


class BrokerService(broker_pb2_grpc.BrowserBrokerServiceServicer):
    def __init__(
        self, broker: Broker, auth: Authenticator, forwarder: Forwarder | None = None
    ) -> None:
        """`forwarder`: cluster mode's route to the other nodes (None outside a cluster)."""
        self.broker = broker
        self.leases = broker.leases
        self.settings = broker.settings
        self.cluster = broker.cluster
        self.auth = auth
        self.forwarder = forwarder
        self._status_calls: dict[str, _RateLimit] = {}

    @unary
    async def Acquire(self, request: pb.AcquireRequest, context: Context) -> pb.AcquireResponse:
        tenant = self.auth.tenant_for(context, "Acquire")
        spec = decode.lease_spec(request, self.settings, tenant)
        while True:
            if self.forwarder is not None:
                placed = await self.forwarder.place(request, spec.engine, tenant, context)
                if placed is not None:
                    return placed  # type: ignore[no-any-return]
            reservation = None
            if self.cluster is not None:  # the cluster-wide quota holds before a browser opens
                reservation = await self.cluster.reserve(tenant, context.time_remaining())
            try:
                lease = await self.leases.acquire(spec, context.time_remaining())
                break
            except BaseException as error:
                if self.cluster is not None:
                    self.cluster.unreserve(tenant, reservation)
                # A node that began to drain meanwhile (its queue was failed) places the
                # Acquire again, elsewhere now; a single broker refuses it (UNAVAILABLE).
                if not isinstance(error, Draining) or self.forwarder is None:
                    raise
        if self.cluster is not None:
            try:
                await self.cluster.record_grant(lease, reservation)
            except BaseException:
                self.cluster.unreserve(tenant, reservation)
                self.leases.release(lease, ReleaseReason.ACQUIRE_FAILED)
                raise
        # A caller that left (deadline, cancel) after its lease was granted and before it got
        # the answer holds nothing: the lease ends now, not at its idle timeout.
        left = context.time_remaining()
        if left is not None and left <= 0:
            self.leases.release(lease, ReleaseReason.ACQUIRE_FAILED)
            raise DeadlineExceeded("the deadline passed as the lease was granted; it was released")

        def undelivered(call: Any) -> None:  # gRPC saw the call cancelled after all
            if call.cancelled():
                self.leases.release(lease, ReleaseReason.ACQUIRE_FAILED)

        context.add_done_callback(undelivered)  # type: ignore[arg-type]
        return encode.acquire_response(lease, self.broker.attach.connect_url(lease))

    @streaming
    async def Run(self, request: pb.RunRequest, context: Context) -> AsyncIterator[pb.RunResponse]:
        tenant = self.auth.tenant_for(context, "Run")
        options = await decode.run_options_off_loop(request, self.settings)
        forwarded = await self._route("Run", request, tenant, context, Ended.REFUSED)
        if isinstance(forwarded, Forwarded):
            async for response in forwarded.answers():
                yield response
            return
        lease = self.leases.get(request.lease_id, request.token, tenant)
        if lease.spec.attach is not None and lease.spec.attach.protocol in ATTACH_ONLY:
            raise AttachOnly(ATTACH_ONLY[lease.spec.attach.protocol])
        remaining = context.time_remaining()
        # A Run never outlives max_run_timeout_s, whatever deadline the caller sent.
        timeout_s = self.settings.max_run_timeout_s
        if remaining is not None:
            timeout_s = min(timeout_s, remaining)
        run = Run(self.leases, lease, options, timeout_s, self.settings.default_step_timeout_s)
        # This task streams the results: the Run ends it if it outstays the Run (unread).
        run.start(reader=asyncio.current_task())
        finished = False
        try:
            async for outcome in run.results():
                yield pb.RunResponse(step=encode.step_result(outcome))
            finished = True
        finally:
            # However the stream ended early (the caller's deadline or cancel as CancelledError,
            # a result that could not be written as GeneratorExit), the browser work stops.
            if not finished:
                left = context.time_remaining()
                cause = (
                    CancelCause.DEADLINE
                    if left is not None and left <= 0
                    else CancelCause.CLIENT_CANCELLED
                )
                await run.cancel(cause)
            run.close()  # read or not, the stream is over: its place in the Run limit frees

    @unary
    async def KeepAlive(
        self, request: pb.KeepAliveRequest, context: Context
    ) -> pb.KeepAliveResponse:
        tenant = self.auth.tenant_for(context, "KeepAlive")
        decode.check_lease_ref(request.lease_id, request.token)
        forwarded = await self._route("KeepAlive", request, tenant, context, Ended.REFUSED)
        if isinstance(forwarded, Forwarded):
            return await forwarded.answer()  # type: ignore[no-any-return]
        lease = self.leases.get(request.lease_id, request.token, tenant)
        self.leases.keep_alive(lease, decode.seconds(request.ttl))
        assert lease.expires_at_wall is not None
        return pb.KeepAliveResponse(expires_at=encode.timestamp(lease.expires_at_wall))

    @unary
    async def Release(self, request: pb.ReleaseRequest, context: Context) -> pb.ReleaseResponse:
        tenant = self.auth.tenant_for(context, "Release")
        decode.check_lease_ref(request.lease_id, request.token)
        # The browser closes the session in the background; until it has, the session still
        # counts against capacity, so answering now never over-commits the browser.
        routed = await self._route("Release", request, tenant, context, Ended.ANSWERED)
        if isinstance(routed, Forwarded):
            return await routed.answer()  # type: ignore[no-any-return]
        if isinstance(routed, ReleaseOutcome):  # the cluster's record of its end
            return encode.release_response(routed)
        outcome, _ = self.leases.release_by_client(request.lease_id, request.token, tenant)
        if self.cluster is not None and outcome.released_now:
            # Whoever recorded an end first (e.g. the cluster, for a node cut off) is the answer.
            outcome = agreed(outcome, await self.cluster.confirm_end(request.lease_id))
        return encode.release_response(outcome)

    @unary
    async def GetStatus(
        self, request: pb.GetStatusRequest, context: Context
    ) -> pb.GetStatusResponse:
        tenant = self.auth.tenant_for(context, "GetStatus")
        self._rate_limit(tenant)
        censuses = await self.broker.engine_status()
        tenants = [tenant]
        if tenant.admin:
            tenants = [t.tenant() for t in self.settings.tenants] or [tenant]
        counts = {t.name: self.leases.tenant_counts(t) for t in tenants}
        cluster = None
        if self.cluster is not None and tenant.admin:
            cluster = await self.cluster.view()
        return encode.status_response(self.broker, tenant, censuses, tenants, counts, cluster)

    @streaming
    async def GetTrace(
        self, request: pb.GetTraceRequest, context: Context
    ) -> AsyncIterator[pb.GetTraceResponse]:
        tenant = self.auth.tenant_for(context, "GetTrace")
        decode.check_lease_ref(request.lease_id, request.token)
        forwarded = await self._route("GetTrace", request, tenant, context, Ended.SERVED)
        if isinstance(forwarded, Forwarded):
            async for response in forwarded.answers():
                yield response
            return
        # Release answers before the session is closed, and the trace is written by the close.
        await self.leases.wait_closed(request.lease_id)
        path = self.broker.traces.find(request.lease_id, request.token, tenant)
        with path.open("rb") as trace:  # (read a chunk at a time: a trace may be large)
            while chunk := await asyncio.to_thread(trace.read, TRACE_CHUNK_BYTES):
                yield pb.GetTraceResponse(chunk=chunk)

    async def _route(
        self, method: str, request: Any, tenant: Tenant, context: Context, ended: Ended
    ) -> Forwarded | ReleaseOutcome | None:
        """Cluster mode: a call on a lease this node does not answer from its table goes
        where `Forwarder.route` says; None outside a cluster, and for calls served here."""
        if self.forwarder is None:
            return None
        return await self.forwarder.route(method, request, tenant, context, ended)

    def _rate_limit(self, tenant: Tenant) -> None:
        limit = self._status_calls.setdefault(
            tenant.name, _RateLimit(self.settings.status_requests_per_s)
        )
        if not limit.take():
            raise LimitExceeded(
                "status_rate",
                f"GetStatus is limited to {self.settings.status_requests_per_s:g} calls per "
                "second per tenant",
                retry_after_s=1.0 / self.settings.status_requests_per_s,
            )


class _RateLimit:
    """A token bucket: `rate` calls per second, bursts of up to one second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = max(1.0, rate)
        self.updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(max(1.0, self.rate), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

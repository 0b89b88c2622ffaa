"""The gRPC servicer: authenticates, decodes requests, calls the core, encodes replies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from broker.api import decode, encode
from broker.api import ownership as cluster_edge
from broker.api.auth import Authenticator, Credentials
from broker.api.errors import streaming, unary
from broker.api.forwarding import Forwarder, channel_credentials
from broker.cluster.store import LeaseRecord, NodeRecord
from broker.errors import DeadlineExceeded, LimitExceeded
from broker.leases.lease import ReleaseReason
from broker.leases.runs import CancelCause, Run
from broker.leases.tenants import Tenant
from broker.model.options import EngineName
from broker.runtime.wiring import Broker
from browserbroker.v1 import broker_pb2 as pb
from browserbroker.v1 import broker_pb2_grpc

Context = aio.ServicerContext[Any, Any]
TRACE_CHUNK_BYTES = 1024 * 1024


class BrokerService(broker_pb2_grpc.BrowserBrokerServiceServicer):
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.leases = broker.leases
        self.settings = broker.settings
        self.auth = Authenticator(
            [
                Credentials(
                    t.tenant(),
                    tuple(bytes.fromhex(d) for d in t.token_sha256),
                    tuple(t.client_cert_names),
                )
                for t in self.settings.tenants
            ],
            cluster=broker.cluster is not None,
            cluster_secret=(
                self.settings.cluster_secret.get_secret_value()
                if self.settings.cluster_secret is not None
                else None
            ),
        )
        self._status_calls: dict[str, _RateLimit] = {}
        self.cluster = broker.cluster
        self.forwarder: Forwarder | None = None
        if self.cluster is not None:
            secret = self.settings.cluster_secret
            settings = self.settings
            self.forwarder = Forwarder(
                self.cluster,
                secret.get_secret_value() if secret is not None else None,
                settings.max_message_bytes,
                channel_credentials(
                    settings.tls_cert_file is not None,
                    settings.cluster_ca_file,
                    settings.cluster_client_cert_file,
                    settings.cluster_client_key_file,
                ),
            )

    @unary
    async def Acquire(self, request: pb.AcquireRequest, context: Context) -> pb.AcquireResponse:
        tenant = self.auth.tenant_for(context)
        spec = decode.lease_spec(request, self.settings, tenant)
        if self.forwarder is not None:
            if cluster_edge.placed(context):
                if self._full():  # the entry node's view was stale: it places it again
                    await cluster_edge.no_room(context)
            else:
                while target := await self._placement(spec.tenant, spec.engine, context):
                    placed = await self.forwarder.place(request, target, tenant, context)
                    if placed is not None:
                        return placed  # type: ignore[no-any-return]
                    self.forwarder.node.mark_full(target.node_id)
        lease = await self.leases.acquire(spec, context.time_remaining())
        if self.cluster is not None:
            try:
                await self.cluster.record_grant(lease)
            except BaseException:
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
        return encode.acquire_response(lease)

    @streaming
    async def Run(self, request: pb.RunRequest, context: Context) -> AsyncIterator[pb.RunResponse]:
        tenant = self.auth.tenant_for(context)
        options = decode.run_options(request, self.settings)
        held = await self._held_elsewhere(request.lease_id, request.token, tenant)
        if held is not None:
            assert self.forwarder is not None
            async for response in self.forwarder.stream(
                "Run", request, held.node_address, held.node, tenant, context
            ):
                yield response
            return
        lease = self.leases.get(request.lease_id, request.token, tenant)
        remaining = context.time_remaining()
        # A Run never outlives max_run_timeout_s, whatever deadline the caller sent.
        timeout_s = self.settings.max_run_timeout_s
        if remaining is not None:
            timeout_s = min(timeout_s, remaining)
        run = Run(self.leases, lease, options, timeout_s, self.settings.default_step_timeout_s)
        run.start()
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

    @unary
    async def KeepAlive(
        self, request: pb.KeepAliveRequest, context: Context
    ) -> pb.KeepAliveResponse:
        tenant = self.auth.tenant_for(context)
        decode.check_lease_ref(request.lease_id, request.token)
        held = await self._held_elsewhere(request.lease_id, request.token, tenant)
        if held is not None:
            assert self.forwarder is not None
            return await self.forwarder.unary(  # type: ignore[no-any-return]
                "KeepAlive", request, held.node_address, held.node, tenant, context
            )
        lease = self.leases.get(request.lease_id, request.token, tenant)
        self.leases.keep_alive(lease, decode.seconds(request.ttl))
        assert lease.expires_at_wall is not None
        return pb.KeepAliveResponse(expires_at=encode.timestamp(lease.expires_at_wall))

    @unary
    async def Release(self, request: pb.ReleaseRequest, context: Context) -> pb.ReleaseResponse:
        tenant = self.auth.tenant_for(context)
        decode.check_lease_ref(request.lease_id, request.token)
        # The browser closes the session in the background; until it has, the session still
        # counts against capacity, so answering now never over-commits the browser.
        held = await self._held_elsewhere(request.lease_id, request.token, tenant, ended_ok=True)
        if held is not None and held.ended:
            return encode.release_response(cluster_edge.outcome_of(held))
        if held is not None:
            assert self.forwarder is not None
            return await self.forwarder.unary(  # type: ignore[no-any-return]
                "Release", request, held.node_address, held.node, tenant, context
            )
        outcome, _ = self.leases.release_by_client(request.lease_id, request.token, tenant)
        if self.cluster is not None and outcome.released_now:
            # Whoever recorded an end first (e.g. the cluster, for a node cut off) is the answer.
            finished = await self.cluster.confirm_end(request.lease_id)
            outcome = cluster_edge.agreed(outcome, finished)
        return encode.release_response(outcome)

    @unary
    async def GetStatus(
        self, request: pb.GetStatusRequest, context: Context
    ) -> pb.GetStatusResponse:
        tenant = self.auth.tenant_for(context)
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
        tenant = self.auth.tenant_for(context)
        decode.check_lease_ref(request.lease_id, request.token)
        held = await self._held_elsewhere(request.lease_id, request.token, tenant, ended_ok=True)
        if held is not None and held.node_address:
            assert self.forwarder is not None
            async for response in self.forwarder.stream(
                "GetTrace", request, held.node_address, held.node, tenant, context
            ):
                yield response
            return
        # Release answers before the session is closed, and the trace is written by the close.
        await self.leases.wait_closed(request.lease_id)
        path = self.broker.traces.find(request.lease_id, request.token, tenant)
        with path.open("rb") as trace:  # (read a chunk at a time: a trace may be large)
            while chunk := await asyncio.to_thread(trace.read, TRACE_CHUNK_BYTES):
                yield pb.GetTraceResponse(chunk=chunk)

    def _full(self) -> bool:
        leases = self.leases
        return leases.used_count >= leases.limits.capacity or leases.queued_count > 0

    async def _placement(
        self, tenant: Tenant, engine: EngineName, context: Context
    ) -> NodeRecord | None:
        """Cluster mode: where an Acquire is served; None for here. Nobody waiting and room
        here: here. Nobody waiting and a node with room: there. Else it queues cluster-wide."""
        assert self.cluster is not None
        if await self.cluster.queue_length() == 0:
            if not self._full():
                return None
            target = self.cluster.place(engine)
            if target is not None:
                return target
        return await self.cluster.wait_for_room(
            tenant,
            engine,
            self.settings.queue_limit,
            context.time_remaining(),
            lambda: not self._full(),
        )

    async def _held_elsewhere(
        self, lease_id: str, token: str, tenant: Tenant, ended_ok: bool = False
    ) -> LeaseRecord | None:
        """Cluster mode: the record of a lease this node neither holds nor remembers, when
        another node holds it (or, with `ended_ok`, the cluster recorded its end)."""
        if self.cluster is None or self.leases.knows(lease_id):
            return None
        record = await self.cluster.lookup(lease_id)
        if record is None:
            return None  # the local lookup answers: unknown lease
        cluster_edge.check_owner(record, token, tenant)
        if record.ended:
            if ended_ok:
                return record
            raise cluster_edge.ended_error(record)
        if record.node == self.cluster.node_id:
            return None  # (this node's, as the local table answers)
        return record

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

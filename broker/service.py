"""The gRPC servicer: decodes requests, calls the lease table, encodes replies. Nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from broker import decode, encode
from broker.app import Broker
from broker.lease import ReleaseReason
from broker.rpc_errors import streaming, unary
from broker.runs import CancelCause, Run
from browserbroker.v1 import broker_pb2 as pb
from browserbroker.v1 import broker_pb2_grpc

Context = aio.ServicerContext[Any, Any]


class BrokerService(broker_pb2_grpc.BrowserBrokerServiceServicer):
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.leases = broker.leases
        self.settings = broker.settings

    @unary
    async def Acquire(self, request: pb.AcquireRequest, context: Context) -> pb.AcquireResponse:
        spec = decode.lease_spec(request, self.settings)
        lease = await self.leases.acquire(spec, context.time_remaining())
        return encode.acquire_response(lease)

    @streaming
    async def Run(self, request: pb.RunRequest, context: Context) -> AsyncIterator[pb.RunResponse]:
        options = decode.run_options(request, self.settings)
        lease = self.leases.get(request.lease_id, request.token)
        remaining = context.time_remaining()
        timeout_s = self.settings.max_run_timeout_s if remaining is None else remaining
        run = Run(self.leases, lease, options, timeout_s, self.settings.default_step_timeout_s)
        run.start()
        try:
            async for outcome in run.results():
                yield pb.RunResponse(step=encode.step_result(outcome))
        except asyncio.CancelledError:
            # The caller's deadline passed or it cancelled/disconnected: stop the browser work.
            left = context.time_remaining()
            cause = (
                CancelCause.DEADLINE
                if left is not None and left <= 0
                else CancelCause.CLIENT_CANCELLED
            )
            await run.cancel(cause)
            raise

    @unary
    async def KeepAlive(
        self, request: pb.KeepAliveRequest, context: Context
    ) -> pb.KeepAliveResponse:
        decode.check_lease_ref(request.lease_id, request.token)
        lease = self.leases.get(request.lease_id, request.token)
        self.leases.keep_alive(lease, decode.seconds(request.ttl))
        assert lease.expires_at_wall is not None
        return pb.KeepAliveResponse(expires_at=encode.timestamp(lease.expires_at_wall))

    @unary
    async def Release(self, request: pb.ReleaseRequest, context: Context) -> pb.ReleaseResponse:
        decode.check_lease_ref(request.lease_id, request.token)
        lease = self.leases.lookup_for_release(request.lease_id, request.token)
        outcome = self.leases.release(lease, ReleaseReason.CLIENT_RELEASE)
        if outcome.released_now:
            # Answer once the browser side is closed, so a released slot is really free.
            await self.leases.wait_closed(lease)
        return encode.release_response(outcome)

    @unary
    async def GetStatus(
        self, request: pb.GetStatusRequest, context: Context
    ) -> pb.GetStatusResponse:
        return encode.status_response(self.broker)

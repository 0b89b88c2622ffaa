"""Cluster mode: a call for a lease another node holds is forwarded to that node over gRPC.

The forwarded call carries the caller's remaining deadline, is cancelled when the caller's is,
and carries the current trace context, so the owning node's work is bounded, stopped and traced
as if the caller had dialled it. The owning node trusts the tenant named in the forwarded call
only with the cluster's shared secret (see `broker.api.auth`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NoReturn

import grpc
from grpc import aio
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from broker.api.auth import CLUSTER_SECRET, FORWARDED_TENANT
from broker.cluster.node import ClusterNode
from broker.cluster.store import NodeRecord
from broker.errors import Unavailable
from broker.leases.tenants import Tenant
from browserbroker.v1 import broker_pb2_grpc

PLACED = "x-broker-placed"  # an Acquire another node placed here: serve it here or say no room
NO_ROOM = "x-broker-no-room"  # the answer of a full node to a placed Acquire
_KEPT_TRAILERS = ("grpc-status-details-bin",)

Context = aio.ServicerContext[Any, Any]


def channel_credentials(
    tls: bool, ca_file: Path | None, cert_file: Path | None, key_file: Path | None
) -> grpc.ChannelCredentials | None:
    """TLS to the other nodes when this node serves TLS (the cluster is one trust domain)."""
    if not tls:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=ca_file.read_bytes() if ca_file is not None else None,
        private_key=key_file.read_bytes() if key_file is not None else None,
        certificate_chain=cert_file.read_bytes() if cert_file is not None else None,
    )


class Forwarder:
    def __init__(
        self,
        node: ClusterNode,
        secret: str | None,
        max_message_bytes: int,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.node = node
        self._secret = secret
        self._credentials = credentials
        self._options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        self._stubs: dict[str, broker_pb2_grpc.BrowserBrokerServiceStub] = {}
        self._channels: list[aio.Channel] = []
        self._tracer = trace.get_tracer("browser-broker.forwarding")

    def _stub(self, address: str) -> broker_pb2_grpc.BrowserBrokerServiceStub:
        stub = self._stubs.get(address)
        if stub is None:
            if self._credentials is not None:
                channel = aio.secure_channel(address, self._credentials, options=self._options)
            else:
                channel = aio.insecure_channel(address, options=self._options)
            self._channels.append(channel)
            stub = self._stubs[address] = broker_pb2_grpc.BrowserBrokerServiceStub(channel)
        return stub

    def _metadata(self, tenant: Tenant, placed: bool) -> list[tuple[str, str]]:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)  # the forward span, child of this node's server span
        metadata = [(FORWARDED_TENANT, tenant.name), *carrier.items()]
        if self._secret is not None:
            metadata.append((CLUSTER_SECRET, self._secret))
        if placed:
            metadata.append((PLACED, "1"))
        return metadata

    async def unary(
        self,
        method: str,
        request: Any,
        address: str,
        node_id: str,
        tenant: Tenant,
        context: Context,
        placed: bool = False,
    ) -> Any:
        """Forward one unary call (`method` is the stub's attribute, e.g. "Release")."""
        if not address:  # the node's entry is gone from the store: dead, not yet reaped
            raise _unreachable(node_id)
        with self._tracer.start_as_current_span(
            f"forward/{method}", kind=SpanKind.CLIENT, attributes={"cluster.node": node_id}
        ):
            call = getattr(self._stub(address), method)
            try:
                return await call(
                    request,
                    timeout=context.time_remaining(),
                    metadata=self._metadata(tenant, placed),
                )
            except aio.AioRpcError as error:
                await _relay(error, context, node_id)

    async def place(
        self, request: Any, target: NodeRecord, tenant: Tenant, context: Context
    ) -> Any | None:
        """Send an Acquire to a node that had room; None if it has none now."""
        with self._tracer.start_as_current_span(
            "forward/Acquire", kind=SpanKind.CLIENT, attributes={"cluster.node": target.node_id}
        ):
            acquire: Any = self._stub(target.address).Acquire
            try:
                return await acquire(
                    request,
                    timeout=context.time_remaining(),
                    metadata=self._metadata(tenant, placed=True),
                )
            except aio.AioRpcError as error:
                received: Any = error.trailing_metadata() or ()
                if any(key == NO_ROOM for key, _ in received):
                    return None
                await _relay(error, context, target.node_id)

    async def stream(
        self,
        method: str,
        request: Any,
        address: str,
        node_id: str,
        tenant: Tenant,
        context: Context,
    ) -> AsyncIterator[Any]:
        """Forward a streaming call (Run, GetTrace); when the caller goes (deadline, cancel),
        the owner's call is cancelled, which stops a Run's work in the owner's browser."""
        if not address:
            raise _unreachable(node_id)
        with self._tracer.start_as_current_span(
            f"forward/{method}", kind=SpanKind.CLIENT, attributes={"cluster.node": node_id}
        ):
            call = getattr(self._stub(address), method)(
                request, timeout=context.time_remaining(), metadata=self._metadata(tenant, False)
            )
            try:
                async for response in call:
                    yield response
            except aio.AioRpcError as error:
                await _relay(error, context, node_id)
            finally:
                call.cancel()  # a no-op once the call has ended

    async def close(self) -> None:
        for channel in self._channels:
            with contextlib.suppress(Exception):
                await channel.close(grace=None)


async def _relay(error: aio.AioRpcError, context: Context, node_id: str) -> NoReturn:
    """The owner's answer, passed on as it is (code, message, rich details)."""
    left = context.time_remaining()
    if context.done() or (left is not None and left <= 0):
        raise asyncio.CancelledError
    received: Any = error.trailing_metadata() or ()
    trailers = tuple((key, value) for key, value in received if key in _KEPT_TRAILERS)
    if error.code() is grpc.StatusCode.UNAVAILABLE and not trailers:
        # No answer from the broker itself: the node is unreachable (killed, cut off).
        raise _unreachable(node_id)
    await context.abort(error.code(), error.details() or "", trailing_metadata=trailers)
    raise AssertionError("unreachable")


def _unreachable(node_id: str) -> Unavailable:
    return Unavailable(
        f"node {node_id} holding the lease cannot be reached; if it is gone, the cluster "
        "ends its leases node_lost shortly"
    )

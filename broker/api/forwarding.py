"""Cluster mode: a call for a lease another node holds is forwarded to that node over gRPC.

The forwarded call carries the caller's remaining deadline, is cancelled when the caller's is,
and carries the current trace context, so the owning node's work is bounded, stopped and traced
as if the caller had dialled it. The call is signed with the cluster's secret over what it is
(`broker.api.cluster_metadata`): the owning node trusts the tenant it names only with a valid
signature (`broker.api.auth`), checks here that the signature is for this very call, and never
forwards it again.
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

from broker.api.cluster_metadata import NO_ROOM, ForwardedCall, forwarded_call
from broker.cluster.routing import Ended, Holder, Router
from broker.cluster.signing import CallSigner, request_digest
from broker.errors import Unauthenticated, Unavailable
from broker.leases.lease import ReleaseOutcome
from broker.leases.tenants import Tenant
from broker.model.options import EngineName
from browserbroker.v1 import broker_pb2_grpc

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
        router: Router,
        secret: str | None,
        max_message_bytes: int,
        credentials: grpc.ChannelCredentials | None = None,
        server_name: str | None = None,
    ) -> None:
        """`server_name`: over TLS, the name the other nodes' certificate must carry
        (`cluster_tls_server_name`), checked instead of the address a node is dialled at."""
        self.router = router
        self._signer = CallSigner(secret) if secret is not None else None
        self._credentials = credentials
        self._options: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        if credentials is not None and server_name is not None:
            # Pods are dialled at their IPs, which no certificate names ahead of time: every
            # node presents one certificate for a shared name, and that name is verified.
            self._options.append(("grpc.ssl_target_name_override", server_name))
        self._stubs: dict[str, broker_pb2_grpc.BrowserBrokerServiceStub] = {}
        self._channels: list[aio.Channel] = []
        self._tracer = trace.get_tracer("browser-broker.forwarding")

    @property
    def channels(self) -> tuple[aio.Channel, ...]:
        """The channels to other nodes opened so far and not yet closed."""
        return tuple(self._channels)

    async def route(
        self, method: str, request: Any, tenant: Tenant, context: Context, ended: Ended
    ) -> Forwarded | ReleaseOutcome | None:
        """The one way a call on a lease (`request.lease_id`, `request.token`) leaves this node:
        None to serve it here, the call forwarded to the node that holds the lease, or the
        outcome the cluster recorded (`Ended.ANSWERED`). A call that was itself forwarded is
        answered here or refused: never forwarded again."""
        arrived = _arrived(context, method, request)
        routed = await self.router.route(request.lease_id, request.token, tenant, ended)
        if not isinstance(routed, Holder):
            return routed
        if arrived is not None:
            raise Unavailable(
                f"lease {request.lease_id!r} was forwarded here, but the cluster's record names "
                f"node {routed.node_id}; a forwarded call is never forwarded again"
            )
        if not routed.address:  # the node's entry is gone from the store: dead, not yet reaped
            raise _unreachable(routed.node_id)
        if routed.address == self.router.node.address:
            raise Unavailable(
                f"the cluster's record of lease {request.lease_id!r} names node "
                f"{routed.node_id} at this node's own address; the call is not forwarded"
            )
        return Forwarded(self, method, request, routed, tenant, context)

    async def place(
        self, request: Any, engine: EngineName, tenant: Tenant, context: Context
    ) -> Any | None:
        """An Acquire served by another node: its answer; None to serve it here."""
        arrived = _arrived(context, "Acquire", request)
        if arrived is not None:  # placed here by another node: served here, or placed again
            if arrived.placed and not self.router.room_here():  # (its view was stale)
                await _no_room(context)
            return None
        while target := await self.router.placement(tenant, engine, context.time_remaining()):
            placed = await self._place_on(request, target.node_id, target.address, tenant, context)
            if placed is not None:
                return placed
            self.router.node.mark_full(target.node_id)
        return None

    async def _place_on(
        self, request: Any, node_id: str, address: str, tenant: Tenant, context: Context
    ) -> Any | None:
        """Send an Acquire to a node that had room; None if it has none now."""
        with self._span("Acquire", node_id):
            acquire: Any = self._stub(address).Acquire
            try:
                return await acquire(
                    request,
                    timeout=context.time_remaining(),
                    metadata=self._metadata("Acquire", request, tenant, node_id, placed=True),
                )
            except aio.AioRpcError as error:
                received: Any = error.trailing_metadata() or ()
                if any(key == NO_ROOM for key, _ in received):
                    return None
                await _relay(error, context, node_id)

    def _span(self, method: str, node_id: str) -> Any:
        return self._tracer.start_as_current_span(
            f"forward/{method}", kind=SpanKind.CLIENT, attributes={"cluster.node": node_id}
        )

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

    def _metadata(
        self, method: str, request: Any, tenant: Tenant, to_node: str, placed: bool
    ) -> list[tuple[str, str]]:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)  # the forward span, child of this node's server span
        call = ForwardedCall(
            tenant=tenant.name,
            method=method,
            lease_id=getattr(request, "lease_id", ""),
            request_sha256=_digest(request),
            to_node=to_node,
            placed=placed,
        )
        return [*call.metadata(self._signer), *carrier.items()]

    async def close(self) -> None:
        """Close every channel to another node (at shutdown, once no call can use them)."""
        channels, self._channels, self._stubs = self._channels, [], {}
        for channel in channels:
            with contextlib.suppress(Exception):
                await channel.close(grace=None)


class Forwarded:
    """A call on a lease another node holds, sent there: its answer, or its stream of answers.
    Its deadline is what is left of the caller's when it is sent."""

    def __init__(
        self,
        forwarder: Forwarder,
        method: str,
        request: Any,
        holder: Holder,
        tenant: Tenant,
        context: Context,
    ) -> None:
        self._forwarder = forwarder
        self._method = method  # the stub's attribute, e.g. "Release"
        self._request = request
        self._holder = holder
        self._tenant = tenant
        self._context = context

    def _call(self) -> Any:
        call = getattr(self._forwarder._stub(self._holder.address), self._method)
        return call(
            self._request,
            timeout=self._context.time_remaining(),
            metadata=self._forwarder._metadata(
                self._method, self._request, self._tenant, self._holder.node_id, placed=False
            ),
        )

    async def answer(self) -> Any:
        """A unary call's answer."""
        with self._forwarder._span(self._method, self._holder.node_id):
            try:
                return await self._call()
            except aio.AioRpcError as error:
                await _relay(error, self._context, self._holder.node_id)

    async def answers(self) -> AsyncIterator[Any]:
        """A streaming call's answers (Run, GetTrace); when the caller goes (deadline, cancel),
        the owner's call is cancelled, which stops a Run's work in the owner's browser."""
        with self._forwarder._span(self._method, self._holder.node_id):
            call = self._call()
            try:
                async for response in call:
                    yield response
            except aio.AioRpcError as error:
                await _relay(error, self._context, self._holder.node_id)
            finally:
                call.cancel()  # a no-op once the call has ended


def _arrived(context: Context, method: str, request: Any) -> ForwardedCall | None:
    """The forwarded call this is, as its (signed) metadata describes it; None for a client's
    call. The signature, its method and its node were checked with the tenant
    (`broker.api.auth`); here it is bound to this call: other request bytes under it are
    refused."""
    call = forwarded_call(context.invocation_metadata() or ())
    if call is None:
        return None
    if (
        call.method != method
        or call.lease_id != getattr(request, "lease_id", "")
        or call.request_sha256 != _digest(request)
    ):
        raise Unauthenticated("the forwarded call's signature is for another call")
    return call


def _digest(request: Any) -> str:
    return request_digest(request.SerializeToString(deterministic=True))


async def _no_room(context: Context) -> None:
    """A placed Acquire found this node full: the entry node places it again (or queues it)."""
    await context.abort(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "this node has no room for the placed Acquire",
        trailing_metadata=((NO_ROOM, "1"),),
    )


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

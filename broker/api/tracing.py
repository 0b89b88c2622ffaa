"""RPC server spans, joined to the caller's W3C trace context and to the lease span.

The span layout is described in `broker.observe.lease_telemetry`; this interceptor is its gRPC
half.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from grpc import aio
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from broker.observe.lease_telemetry import LeaseTelemetry

# The broker's own RPCs get spans; health and reflection calls do not.
OUR_SERVICE_PREFIX = "/browserbroker.v1."


def _carrier(metadata: Iterable[tuple[str, Any]] | None) -> dict[str, str]:
    return {k: v for k, v in (metadata or ()) if isinstance(v, str)}


class TracingInterceptor(aio.ServerInterceptor):  # type: ignore[type-arg]
    """A server span per broker RPC, parented as the module docstring says."""

    def __init__(self, telemetry: LeaseTelemetry) -> None:
        self.telemetry = telemetry
        self.tracer = telemetry.tracer

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or not method.startswith(OUR_SERVICE_PREFIX):
            return handler
        carrier = _carrier(details.invocation_metadata)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method, carrier),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(handler.unary_stream, method, carrier),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _start(self, method: str, carrier: dict[str, str], request: Any) -> Span:
        service, _, name = method.lstrip("/").partition("/")
        caller = propagate.extract(carrier)
        caller_span = trace.get_current_span(caller).get_span_context()
        lease_id = getattr(request, "lease_id", "")
        lease_span = self.telemetry.lease_span(lease_id) if lease_id else None
        links = []
        parent = caller
        if lease_span is not None:
            if caller_span.is_valid:
                links.append(Link(lease_span.get_span_context(), {"link": "lease"}))
            else:
                parent = trace.set_span_in_context(lease_span)
        span = self.tracer.start_span(
            f"{service}/{name}",
            context=parent,
            kind=SpanKind.SERVER,
            links=links,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        )
        if lease_id:
            span.set_attribute("lease.id", lease_id)
        if lease_span is not None and caller_span.is_valid:
            lease_span.add_link(span.get_span_context(), {"link": name})
        return span

    @staticmethod
    def _finish(
        span: Span, context: aio.ServicerContext[Any, Any], error: BaseException | None
    ) -> None:
        code = context.code() if hasattr(context, "code") else None
        if isinstance(error, BaseException) and type(error).__name__ == "CancelledError":
            left = context.time_remaining()
            cause = "deadline_exceeded" if left is not None and left <= 0 else "client_cancelled"
            span.add_event("rpc.cancelled", {"cause": cause})
            span.set_status(Status(StatusCode.ERROR, cause))
        elif code is not None and code != grpc.StatusCode.OK:
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            span.set_status(Status(StatusCode.ERROR, f"{code.name}: {context.details() or ''}"))
        elif error is not None and not isinstance(error, aio.AbortError):
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        else:
            span.set_attribute("rpc.grpc.status_code", 0)
        span.end()

    def _unary(
        self, inner: Callable[..., Awaitable[Any]], method: str, carrier: dict[str, str]
    ) -> Callable[..., Awaitable[Any]]:
        async def handle(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            span = self._start(method, carrier, request)
            token = otel_context.attach(trace.set_span_in_context(span))
            error: BaseException | None = None
            try:
                return await inner(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                otel_context.detach(token)
                self._finish(span, context, error)

        return handle

    def _stream(
        self, inner: Callable[..., AsyncIterator[Any]], method: str, carrier: dict[str, str]
    ) -> Callable[..., AsyncIterator[Any]]:
        async def handle(
            request: Any, context: aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            span = self._start(method, carrier, request)
            error: BaseException | None = None
            token = otel_context.attach(trace.set_span_in_context(span))
            try:
                async for item in inner(request, context):
                    yield item
            except BaseException as exc:
                error = exc
                raise
            finally:
                otel_context.detach(token)
                self._finish(span, context, error)

        return handle

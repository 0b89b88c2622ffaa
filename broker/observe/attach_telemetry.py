"""A span per attached client's connection, a child of its lease's span: the protocol, the
client's user agent, message and byte counts both ways, refusals, and why it closed."""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Tracer

from broker.attach.server import ConnectionInfo, ConnectionStats
from broker.observe.otel import SCOPE


class ConnectionSpans:
    def __init__(
        self, lease_span: Callable[[str], Span | None], tracer: Tracer | None = None
    ) -> None:
        self._tracer = tracer or trace.get_tracer(SCOPE)
        self._lease_span = lease_span

    def opened(self, info: ConnectionInfo) -> Callable[[ConnectionStats], None]:
        parent = self._lease_span(info.lease_id)
        context = trace.set_span_in_context(parent) if parent is not None else None
        span = self._tracer.start_span(
            "attach.connection",
            context=context,
            kind=SpanKind.SERVER,
            attributes={
                "lease.id": info.lease_id,
                "attach.protocol": info.protocol,
                "attach.user_agent": info.user_agent,
            },
        )

        def closed(stats: ConnectionStats) -> None:
            span.set_attributes(
                {
                    "attach.messages_in": stats.messages_in,
                    "attach.messages_out": stats.messages_out,
                    "attach.bytes_in": stats.bytes_in,
                    "attach.bytes_out": stats.bytes_out,
                    "attach.refused": stats.refused,
                    "attach.close_cause": stats.cause,
                }
            )
            span.end()

        return closed

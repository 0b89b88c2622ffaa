"""OpenTelemetry: one span per lease, RPC server spans joined to the caller's trace, and metrics.

Configured the standard way (OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_SAMPLER,
...). With no exporter configured nothing is installed: the API's no-op tracer and meter cost
next to nothing, and the RPC interceptor is left out altogether.

Span layout. `Acquire` runs in a server span that continues the caller's W3C context; the lease
span starts as its child and ends in the one release path. `Run`, `KeepAlive` and `Release` server
spans continue the caller's context when it sends one (and link to the lease span), and otherwise
become children of the lease span, so a lease's whole life is one trace. Each Run step is a child
span of its Run.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc import aio
from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from broker.events import LeaseObserver
from broker.lease import Lease, ReleaseOutcome
from broker.steps import StepOutcome

log = logging.getLogger("broker.telemetry")

SCOPE = "browser-broker"
OUR_SERVICE_PREFIX = "/browserbroker.v1."


def _exporter_configured(signal: str) -> bool:
    """True when the OTEL_* environment asks for an OTLP export of `signal` ("traces"/"metrics")."""
    chosen = os.environ.get(f"OTEL_{signal.upper()}_EXPORTER", "").strip().lower()
    if chosen == "none":
        return False
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
    )
    return bool(endpoint) or chosen == "otlp"


@dataclass
class TelemetrySetup:
    tracing: bool
    metrics: bool
    shutdown: Callable[[], None]


def configure(prometheus_port: int | None = None) -> TelemetrySetup:
    """Install the SDK providers the environment asks for; returns how to flush them at exit."""
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", SCOPE)})
    shutdowns: list[Callable[[], object]] = []
    tracing = _exporter_configured("traces")
    if tracing:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        tracer_provider = TracerProvider(resource=resource)  # sampler from OTEL_TRACES_SAMPLER
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(tracer_provider)
        shutdowns.append(tracer_provider.shutdown)
    readers: list[Any] = []
    if _exporter_configured("metrics"):
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    if prometheus_port:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        start_http_server(prometheus_port, addr="127.0.0.1")
        readers.append(PrometheusMetricReader())
    if readers:
        from opentelemetry.sdk.metrics import MeterProvider

        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        metrics.set_meter_provider(meter_provider)
        shutdowns.append(meter_provider.shutdown)

    def shutdown() -> None:
        for stop in shutdowns:
            try:
                stop()
            except Exception:
                log.exception("telemetry shutdown failed")

    return TelemetrySetup(tracing=tracing, metrics=bool(readers), shutdown=shutdown)


class LeaseTelemetry(LeaseObserver):
    """Lease spans and lease metrics, driven by the lease table's events."""

    def __init__(self, gauges: Callable[[], dict[str, float]] | None = None) -> None:
        self.tracer = trace.get_tracer(SCOPE)
        self._spans: dict[str, Span] = {}
        meter = metrics.get_meter(SCOPE)
        self._acquire_latency = meter.create_histogram(
            "broker.acquire.duration", unit="s", description="Acquire: request to granted lease"
        )
        self._queue_wait = meter.create_histogram(
            "broker.acquire.queue_wait", unit="s", description="time spent waiting for capacity"
        )
        self._run_duration = meter.create_histogram("broker.run.duration", unit="s")
        self._step_duration = meter.create_histogram("broker.step.duration", unit="s")
        self._releases = meter.create_counter(
            "broker.lease.releases", description="ended leases, by release.reason"
        )
        self._drift = meter.create_counter(
            "broker.drift.repairs", description="lease table vs engine drift found and repaired"
        )
        self._gauges = gauges

        def observe(name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
            def callback(options: CallbackOptions) -> Iterable[Observation]:
                values = self._gauges() if self._gauges is not None else {}
                return [Observation(values[name])] if name in values else []

            return callback

        for name, description in (
            ("broker.leases.active", "leases currently lent"),
            ("broker.queue.depth", "Acquire calls waiting for capacity"),
            ("broker.pool.size", "warm sessions ready"),
            ("broker.browsers", "live browser processes"),
            ("broker.browsers.retiring", "shared browsers draining before recycling"),
            ("broker.contexts", "open browser contexts"),
            ("broker.pages", "open pages"),
        ):
            meter.create_observable_gauge(name, [observe(name)], description=description)

    def lease_span(self, lease_id: str) -> Span | None:
        return self._spans.get(lease_id)

    # -------------------------------------------------------------- events

    def lease_granted(self, lease: Lease) -> None:
        requested = lease.requested_at
        start_ns = int(requested.timestamp() * 1e9) if requested is not None else None
        # Started in the Acquire handler, so the current span (Acquire's) becomes the parent.
        span = self.tracer.start_span(
            "lease",
            kind=SpanKind.INTERNAL,
            start_time=start_ns,
            attributes={
                "lease.id": lease.id,
                "lease.engine": lease.spec.engine.value,
                "lease.isolation": lease.spec.isolation.value,
                "lease.ttl_s": lease.spec.ttl_s,
                "lease.idle_timeout_s": lease.spec.idle_timeout_s,
                "lease.queue_wait_ms": round(lease.queue_wait_s * 1000, 3),
                "lease.warm": lease.warm,
                **{f"lease.label.{k}": v for k, v in lease.spec.labels},
            },
        )
        self._spans[lease.id] = span
        current = trace.get_current_span()
        if current.get_span_context().is_valid:
            current.set_attribute("lease.id", lease.id)
        if requested is not None:
            elapsed = time.time() - requested.timestamp()
            self._acquire_latency.record(elapsed, {"engine": lease.spec.engine.value})
        self._queue_wait.record(lease.queue_wait_s, {"engine": lease.spec.engine.value})

    def lease_extended(self, lease: Lease) -> None:
        span = self._spans.get(lease.id)
        if span is not None and lease.expires_at_wall is not None:
            span.add_event("keepalive", {"lease.expires_at": lease.expires_at_wall.isoformat()})

    def lease_expiring(self, lease: Lease, seconds_left: float) -> None:
        span = self._spans.get(lease.id)
        if span is not None:
            span.add_event("lease.expiring", {"seconds_left": seconds_left})

    def lease_released(self, lease: Lease, outcome: ReleaseOutcome) -> None:
        self._releases.add(
            1, {"release.reason": outcome.reason.value, "engine": lease.spec.engine.value}
        )
        span = self._spans.pop(lease.id, None)
        if span is None:
            return
        span.set_attribute("release.reason", outcome.reason.value)
        span.set_attribute("lease.runs", lease.run_count)
        span.set_attribute("lease.steps", lease.step_count)
        if outcome.reason.value in ("engine_crashed", "page_crashed", "drift_repaired"):
            span.set_status(Status(StatusCode.ERROR, outcome.reason.value))
        span.end(end_time=int(outcome.released_at.timestamp() * 1e9))

    def run_started(self, lease: Lease, steps: int) -> None:
        span = self._spans.get(lease.id)
        if span is not None:
            span.add_event("run.started", {"steps": steps})

    def step_finished(self, lease: Lease, outcome: StepOutcome) -> None:
        self._step_duration.record(outcome.duration_s, {"action": outcome.action, "ok": outcome.ok})
        # Runs inside the Run's task, whose current span is the Run server span: the parent.
        end_ns = time.time_ns()
        span = self.tracer.start_span(
            f"step {outcome.action}",
            start_time=end_ns - int(outcome.duration_s * 1e9),
            attributes={
                "step.index": outcome.index,
                "step.action": outcome.action,
                "step.ok": outcome.ok,
                "step.url": outcome.url,
                "lease.id": lease.id,
            },
        )
        if not outcome.ok:
            kind = outcome.error_kind.value if outcome.error_kind else "error"
            span.set_attribute("step.error_kind", kind)
            span.set_status(Status(StatusCode.ERROR, f"{kind}: {outcome.error_message}"))
        span.end(end_time=end_ns)

    def run_cancelled(self, lease: Lease, cause: str) -> None:
        for span in (trace.get_current_span(), self._spans.get(lease.id)):
            if span is not None and span.get_span_context().is_valid:
                span.add_event("run.cancelled", {"cause": cause})
        current = trace.get_current_span()
        current.set_status(Status(StatusCode.ERROR, f"run cancelled: {cause}"))

    def run_finished(self, lease: Lease, duration_s: float, error: str) -> None:
        self._run_duration.record(duration_s, {"engine": lease.spec.engine.value, "error": error})

    def drift_repaired(self, what: str, detail: str) -> None:
        self._drift.add(1, {"drift": what})


# --------------------------------------------------------------------- RPC spans


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

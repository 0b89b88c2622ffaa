"""OpenTelemetry set up the standard way (OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_TRACES_SAMPLER, ...). With no exporter configured nothing is installed: the API's no-op tracer
and meter cost next to nothing, and the RPC interceptor is left out altogether.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace

log = logging.getLogger("broker.telemetry")

# The instrumentation scope of the broker's spans and metrics, and its default service name.
SCOPE = "browser-broker"


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


def configure(
    prometheus_port: int | None = None, prometheus_host: str = "127.0.0.1"
) -> TelemetrySetup:
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

        start_http_server(prometheus_port, addr=prometheus_host)
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

"""The examples' trace context reaches the broker: its spans join the trace the client printed.

A broker of its own exports spans over OTLP to a small collector in this test; the Go and
Node.js examples run a full cycle against it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.support import BrokerProcess

from .polyglot_helpers import run


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver that keeps every span."""

    def __init__(self) -> None:
        self.spans: list[trace_pb2.Span] = []
        self._lock = threading.Lock()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self._lock:
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend(scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def trace(self, trace_id: str) -> list[trace_pb2.Span]:
        with self._lock:
            return [s for s in self.spans if s.trace_id.hex() == trace_id]


@pytest.fixture(scope="module")
def collector() -> Iterator[tuple[Collector, str]]:
    receiver = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield receiver, f"http://127.0.0.1:{port}"
    server.stop(None)


@pytest.fixture(scope="module")
def traced_broker(collector: tuple[Collector, str]) -> Iterator[BrokerProcess]:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector[1],
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    }
    broker = BrokerProcess(args=["--warm-pool-size", "0"], env=env).start()
    yield broker
    broker.stop()


@pytest.mark.browser
def test_broker_spans_join_the_client_trace(
    example: list[str],
    traced_broker: BrokerProcess,
    collector: tuple[Collector, str],
    fixture_server: Any,
) -> None:
    url = fixture_server.url("form.html")
    outcome = run([*example, "--addr", traced_broker.address, "--url", url, "--selector", "#title"])
    assert outcome.returncode == 0, outcome.describe()
    trace_id = outcome.events[0]["trace_id"]
    receiver = collector[0]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        names = {s.name for s in receiver.trace(trace_id)}
        if {"lease", "browserbroker.v1.BrowserBrokerService/Release"} <= names:
            break
        time.sleep(0.2)
    spans = receiver.trace(trace_id)
    by_name = {s.name: s for s in spans}
    assert "browserbroker.v1.BrowserBrokerService/Acquire" in by_name, (
        f"no Acquire span in trace {trace_id}: {sorted(by_name)}\n{traced_broker.log()[-3000:]}"
    )
    acquire = by_name["browserbroker.v1.BrowserBrokerService/Acquire"]
    # Its parent is the client's span: in the trace, but not a span the broker made.
    ours = {s.span_id for s in receiver.spans}
    assert acquire.parent_span_id and acquire.parent_span_id not in ours
    assert by_name["lease"].parent_span_id == acquire.span_id
    assert "browserbroker.v1.BrowserBrokerService/Run" in by_name

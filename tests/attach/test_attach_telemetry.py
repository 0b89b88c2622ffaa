"""An attached client's connection is a span of its own, a child of its lease's span: the
protocol, the client's user agent, message and byte counts both ways, and why it closed."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from broker.observe.attach_telemetry import ConnectionSpans
from broker.observe.lease_telemetry import LeaseTelemetry
from tests.attach.support import closed_with, raw
from tests.conftest import BrokerFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]

AGENT = "attach-telemetry-test/1.0"


async def test_a_connection_is_a_child_span_of_its_lease_with_counts_and_cause(
    broker_factory: BrokerFactory,
) -> None:
    broker = await broker_factory()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = LeaseTelemetry()
    telemetry.tracer = provider.get_tracer("test")
    broker.broker.observers.add(telemetry)
    broker.broker.attach.watch = ConnectionSpans(telemetry.lease_span, telemetry.tracer).opened

    lease = await broker.client.acquire(attach="cdp", ttl=120)
    async with raw(lease.connect_url, user_agent_header=AGENT) as client:
        version = await client.call("Browser.getVersion")
        assert "result" in version, version
        targets = await client.call("Target.getTargets")
        assert "result" in targets, targets
        await lease.release()
        code, reason = await closed_with(client.socket)
    assert (code, reason) == (4001, "lease ended: client_release")

    def finished(name: str) -> list[ReadableSpan]:
        return [s for s in exporter.get_finished_spans() if s.name == name]

    # The connection's span ends once its socket has closed; the lease's on release.
    for _ in range(100):
        if finished("attach.connection") and finished("lease"):
            break
        await asyncio.sleep(0.05)
    (lease_span,) = finished("lease")
    (span,) = finished("attach.connection")
    assert span.parent is not None and lease_span.context is not None
    assert span.parent.span_id == lease_span.context.span_id
    assert span.context is not None and span.context.trace_id == lease_span.context.trace_id
    attributes = dict(span.attributes or {})
    assert attributes["lease.id"] == lease.id
    assert attributes["attach.protocol"] == "cdp"
    assert attributes["attach.user_agent"] == AGENT
    for count in ("messages_in", "messages_out", "bytes_in", "bytes_out"):
        assert int(attributes[f"attach.{count}"]) > 0, (count, attributes)  # type: ignore[arg-type]
    assert int(attributes["attach.messages_in"]) >= 2  # type: ignore[arg-type]
    assert attributes["attach.refused"] == 0
    assert attributes["attach.close_cause"] == "lease ended: client_release"
    assert lease.connect_url not in str(attributes)  # the attach token stays out
    assert "token" not in str(attributes)

"""A lease is one trace in a real Jaeger, joined to the caller's trace.

Jaeger (all-in-one, in-memory storage, loopback only) is built by `scripts/jaeger.sh build`, which
the test command runs first; the broker exports to it over OTLP, and so does the client here.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from browserbroker import BrokerClient, DeadlineExceededError, steps
from browserbroker.v1 import broker_pb2 as pb
from tests.cluster_support import Cluster
from tests.conftest import require
from tests.fixture_site import FixtureSite
from tests.redis_server import RedisServer
from tests.support import ROOT, BrokerProcess

pytestmark = pytest.mark.browser

SERVICE = "browser-broker-e2e"
RPC = "browserbroker.v1.BrowserBrokerService/"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def jaeger() -> Iterator[dict[str, int]]:
    script = ROOT / "scripts" / "jaeger.sh"
    # Built by the test command before pytest starts; a test never builds it.
    built = subprocess.run(["bash", str(script), "path"], capture_output=True, text=True)
    require(built.returncode == 0, built.stderr.strip())
    ports = {
        "JAEGER_OTLP_GRPC_PORT": free_port(),
        "JAEGER_OTLP_HTTP_PORT": free_port(),
        "JAEGER_QUERY_PORT": free_port(),
        "JAEGER_QUERY_GRPC_PORT": free_port(),
    }
    workdir = Path(tempfile.mkdtemp(prefix="jaeger-"))
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}}
    started = subprocess.run(
        ["bash", str(script), "start", str(workdir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 0, started.stderr
    try:
        yield ports
    finally:
        subprocess.run(["bash", str(script), "stop", str(workdir)], env=env, timeout=60)


def query(ports: dict[str, int], path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{ports['JAEGER_QUERY_PORT']}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def find_trace(
    ports: dict[str, int], lease_id: str, until: Any, timeout_s: float = 30
) -> dict[str, Any]:
    """Polls Jaeger for the trace tagged with `lease_id` until `until(trace)` holds."""
    deadline = time.monotonic() + timeout_s
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = query(
            ports,
            "/api/traces",
            service=SERVICE,
            tags=json.dumps({"lease.id": lease_id}),
            limit="20",
        )["data"]
        if found and until(found[0]):
            return dict(found[0])
        time.sleep(0.25)
    raise AssertionError(f"no complete trace for {lease_id} in Jaeger: {json.dumps(found)[:2000]}")


def tags(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span.get("tags", [])}


def spans_named(trace_json: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [s for s in trace_json["spans"] if s["operationName"] == name]


def parent_id(span: dict[str, Any]) -> str | None:
    refs = [r for r in span.get("references", []) if r["refType"] == "CHILD_OF"]
    return refs[0]["spanID"] if refs else None


def event_fields(span: dict[str, Any]) -> list[dict[str, Any]]:
    return [{f["key"]: f["value"] for f in log["fields"]} for log in span.get("logs", [])]


def test_lease_is_one_trace_joined_to_the_caller(
    jaeger: dict[str, int], fixture_server: FixtureSite
) -> None:
    otlp = f"http://127.0.0.1:{jaeger['JAEGER_OTLP_GRPC_PORT']}"
    broker = BrokerProcess(
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp,
            "OTEL_SERVICE_NAME": SERVICE,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_METRICS_EXPORTER": "none",
        }
    ).start()
    provider = TracerProvider(resource=Resource.create({"service.name": "e2e-client"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=otlp, insecure=True)))
    tracer = provider.get_tracer("e2e")
    try:
        with (
            BrokerClient(broker.address) as client,
            tracer.start_as_current_span("client work") as mine,
        ):
            lease = client.acquire(ttl=60)
            lease.run(steps.goto(fixture_server.url("form.html")), steps.text("h1"), timeout=30)
            lease.keep_alive(ttl=60)
            with pytest.raises(DeadlineExceededError):
                lease.run(steps.goto(fixture_server.url("slow?seconds=20")), timeout=1)
            lease.release()
        client_span_id = format(mine.get_span_context().span_id, "016x")
        client_trace_id = format(mine.get_span_context().trace_id, "032x")
        provider.force_flush()

        def complete(t: dict[str, Any]) -> bool:
            leases = spans_named(t, "lease")
            return (
                bool(leases)
                and "release.reason" in tags(leases[0])
                and len(spans_named(t, RPC + "Run")) == 2
                and bool(spans_named(t, RPC + "Release"))
            )

        found = find_trace(jaeger, lease.id, complete)
    finally:
        broker.stop()
        provider.shutdown()

    assert found["traceID"].lstrip("0") == client_trace_id.lstrip(
        "0"
    )  # joined to the caller's trace
    lease_span = spans_named(found, "lease")[0]
    lease_tags = tags(lease_span)
    assert lease_tags["lease.id"] == lease.id
    assert lease_tags["release.reason"] == "client_release"
    assert lease_tags["lease.engine"] == "chromium" and lease_tags["lease.runs"] == 2

    acquire = spans_named(found, RPC + "Acquire")[0]
    assert parent_id(acquire) == client_span_id  # the SDK's span parents the broker's RPC span
    assert parent_id(lease_span) == acquire["spanID"]
    assert {"keepalive"} <= {e.get("event") for e in event_fields(lease_span)}

    runs = spans_named(found, RPC + "Run")
    assert (
        len(runs) == 2
        and spans_named(found, RPC + "Release")
        and spans_named(found, RPC + "KeepAlive")
    )
    ok_run, cancelled_run = sorted(runs, key=lambda s: s["startTime"])
    steps_of_ok = [s for s in found["spans"] if parent_id(s) == ok_run["spanID"]]
    assert sorted(s["operationName"] for s in steps_of_ok) == ["step get_text", "step goto"]
    assert all(tags(s)["step.ok"] for s in steps_of_ok)

    cancelled_tags = tags(cancelled_run)
    assert cancelled_tags.get("error") is True
    causes = [e.get("cause") for e in event_fields(cancelled_run)]
    assert "deadline_exceeded" in causes, event_fields(cancelled_run)
    assert "deadline_exceeded" in str(cancelled_tags.get("otel.status_description", "")).lower()


async def test_a_lease_run_through_another_cluster_node_is_still_one_trace(
    jaeger: dict[str, int],
) -> None:
    """Acquire on node A, Run and Release through node B: B's RPC span, its forward span and
    A's RPC span and steps are one trace, joined to the caller's, with A's lease span."""
    otlp = f"http://127.0.0.1:{jaeger['JAEGER_OTLP_GRPC_PORT']}"
    redis = RedisServer().start()
    cluster = Cluster(
        redis,
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp,
            "OTEL_SERVICE_NAME": SERVICE,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_METRICS_EXPORTER": "none",
        },
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "e2e-client"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=otlp, insecure=True)))
    tracer = provider.get_tracer("e2e")
    try:
        a, b = (cluster.start_node(name).process.address for name in ("a", "b"))
        await cluster.wait_formed()
        with (
            BrokerClient(a) as client_a,
            BrokerClient(b) as client_b,
            tracer.start_as_current_span("client work") as mine,
        ):
            lease = client_a.acquire(ttl=60)
            carrier: dict[str, str] = {}
            propagate.inject(carrier, context=trace.set_span_in_context(mine))
            run = client_b.stub.Run(
                pb.RunRequest(
                    lease_id=lease.id, token=lease.grant.token, steps=[steps.evaluate("1")]
                ),
                metadata=tuple(carrier.items()),
                timeout=30,
            )
            assert [r.step.ok for r in run] == [True]
            client_b.stub.Release(
                pb.ReleaseRequest(lease_id=lease.id, token=lease.grant.token),
                metadata=tuple(carrier.items()),
            )
        trace_id = format(mine.get_span_context().trace_id, "032x")
        provider.force_flush()

        def complete(t: dict[str, Any]) -> bool:
            leases = spans_named(t, "lease")
            return (
                bool(leases)
                and "release.reason" in tags(leases[0])
                and len(spans_named(t, RPC + "Run")) == 2
                and len(spans_named(t, RPC + "Release")) == 2
                and bool(spans_named(t, "step evaluate"))
            )

        found = find_trace(jaeger, lease.id, complete)
    finally:
        await cluster.stop()
        redis.stop()
        provider.shutdown()

    assert found["traceID"].lstrip("0") == trace_id.lstrip("0")
    forward = spans_named(found, "forward/Run")
    (entry_run, owner_run) = sorted(spans_named(found, RPC + "Run"), key=lambda s: s["startTime"])
    assert len(forward) == 1 and parent_id(forward[0]) == entry_run["spanID"]
    assert parent_id(owner_run) == forward[0]["spanID"]  # A's span: across the hop
    (step,) = spans_named(found, "step evaluate")
    assert parent_id(step) == owner_run["spanID"]  # the browser work, on the owner
    assert tags(spans_named(found, "lease")[0])["release.reason"] == "client_release"

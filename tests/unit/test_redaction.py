"""Secrets and private data stay out of telemetry: URL queries, fragments and credentials are
stripped from spans and logs."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from broker.common.logs import JsonFormatter, configure
from broker.common.redact import redact_text, redact_url
from broker.leases.lease import Lease, LeaseSpec
from broker.model.options import EngineName, Isolation
from broker.model.steps.base import StepErrorKind, StepOutcome
from broker.observe.lease_telemetry import LeaseTelemetry

SECRET_URL = "https://user:hunter2@shop.test:8443/cart/42?session=s3cr3t&card=4111#token=abc"


def test_urls_keep_only_what_is_not_secret() -> None:
    assert redact_url(SECRET_URL) == "https://shop.test:8443/cart/42?…#…"
    assert redact_url("http://[::1]:8080/a?b=c") == "http://[::1]:8080/a?…"
    assert redact_url("about:blank") == "about:blank"
    text = f"Page.goto: net::ERR_FAILED at {SECRET_URL}\nCall log: navigating to {SECRET_URL}"
    cleaned = redact_text(text)
    assert "s3cr3t" not in cleaned and "hunter2" not in cleaned and "abc" not in cleaned
    assert cleaned.count("https://shop.test:8443/cart/42?…#…") == 2


def recording_telemetry() -> tuple[LeaseTelemetry, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = LeaseTelemetry()
    telemetry.tracer = provider.get_tracer("test")
    return telemetry, exporter


def test_step_spans_carry_no_query_or_credentials() -> None:
    telemetry, exporter = recording_telemetry()
    lease = Lease(LeaseSpec(EngineName.CHROMIUM, Isolation.CONTEXT, 60, 60), granted_at=0.0)
    outcome = StepOutcome(index=0, action="goto", ok=False, url=SECRET_URL)
    outcome.error_kind = StepErrorKind.NAVIGATION
    outcome.error_message = f"net::ERR_FAILED at {SECRET_URL}"
    telemetry.step_finished(lease, outcome)
    (span,) = exporter.get_finished_spans()
    everything = json.dumps(
        {"attributes": dict(span.attributes or {}), "status": span.status.description}
    )
    for secret in ("s3cr3t", "hunter2", "4111", "token=abc"):
        assert secret not in everything, everything
    assert "shop.test:8443/cart/42" in everything  # what is useful stays


def test_log_lines_are_redacted() -> None:
    record = logging.LogRecord(
        "broker.test", logging.ERROR, __file__, 1, "reset failed: %s", (SECRET_URL,), None
    )
    record.url = SECRET_URL
    line = JsonFormatter().format(record)
    assert "s3cr3t" not in line and "hunter2" not in line
    raw = JsonFormatter(redact=False).format(record)
    assert "s3cr3t" in raw  # only when the operator turns redaction off


def test_page_events_land_on_the_lease_span_redacted() -> None:
    from datetime import UTC, datetime

    from broker.leases.lease import ReleaseOutcome, ReleaseReason
    from broker.model.steps.base import PageEvent

    telemetry, exporter = recording_telemetry()
    lease = Lease(LeaseSpec(EngineName.CHROMIUM, Isolation.CONTEXT, 60, 60), granted_at=0.0)
    telemetry.lease_granted(lease)
    outcome = StepOutcome(index=0, action="click")
    outcome.page_events = [
        PageEvent("console.error", f"failed to load {SECRET_URL}", "p1"),
        PageEvent("page.error", "TypeError: x is undefined", "p2"),
    ]
    telemetry.step_finished(lease, outcome)
    telemetry.lease_released(
        lease, ReleaseOutcome(ReleaseReason.CLIENT_RELEASE, datetime.now(UTC), True)
    )
    (lease_span,) = [s for s in exporter.get_finished_spans() if s.name == "lease"]
    events = [(e.name, dict(e.attributes or {})) for e in lease_span.events]
    assert events[0][0] == "console.error" and events[0][1]["page.id"] == "p1"
    assert "s3cr3t" not in str(events[0][1]["text"]) and "shop.test" in str(events[0][1]["text"])
    assert events[1] == ("page.error", {"page.id": "p2", "text": "TypeError: x is undefined"})


def test_websockets_debug_lines_never_reach_the_logs(capsys: pytest.CaptureFixture[str]) -> None:
    """At DEBUG, websockets logs request lines with their query (an attach token), the paths of
    served browsers (a secret) and frames (a client's page data): its logger stays at INFO."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure("DEBUG", "json")
        logging.getLogger("websockets.client").debug("> GET %s HTTP/1.1", "/secret-path")
        logging.getLogger("websockets.server").debug("< GET /cdp/l?token=%s", "t0ken")
        logging.getLogger("broker.attach").debug("broker debug lines stay")
        logging.getLogger("websockets.server").info("connection rejected (403 Forbidden)")
    finally:
        root.handlers[:], root.level = handlers, level
    logged = capsys.readouterr().err
    assert "secret-path" not in logged and "t0ken" not in logged
    assert "broker debug lines stay" in logged and "connection rejected" in logged

"""The lease's telemetry: one span per lease, a span per Run step, and the broker's metrics;
an observer of lease events.

Span layout. `Acquire` runs in a server span that continues the caller's W3C context; the lease
span starts as its child and ends in the one release path. `Run`, `KeepAlive` and `Release` server
spans continue the caller's context when it sends one (and link to the lease span), and otherwise
become children of the lease span, so a lease's whole life is one trace (the RPC spans are made
by `broker.api.tracing.TracingInterceptor`). Each Run step is a child span of its Run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from broker.cluster.records import NodeRecord
from broker.common.redact import redact_text, redact_url
from broker.egress.proxy import Blocked
from broker.leases.events import LeaseObserver
from broker.leases.lease import Lease, ReleaseOutcome
from broker.model.steps.base import StepOutcome
from broker.observe.otel import SCOPE
from broker.warm.pool import PoolStatus, pool_name

log = logging.getLogger("broker.telemetry")


class LeaseTelemetry(LeaseObserver):
    """Lease spans and lease metrics, driven by the lease table's events."""

    def __init__(
        self,
        gauges: Callable[[], dict[str, float]] | None = None,
        redact_urls: bool = True,
        pools: Callable[[], list[PoolStatus]] | None = None,
        nodes: Callable[[], Sequence[NodeRecord]] | None = None,
    ) -> None:
        self.tracer = trace.get_tracer(SCOPE)
        # Query strings, fragments and userinfo never reach a span unless the operator says so.
        self._url = redact_url if redact_urls else _same
        self._text = redact_text if redact_urls else _same
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
        self._egress_blocked = meter.create_counter(
            "broker.egress.blocked", description="requests the egress policy refused, by rule"
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
            ("broker.sessions.unclosed", "released sessions whose context would not close"),
            ("broker.contexts", "open browser contexts"),
            ("broker.pages", "open pages"),
            ("broker.cluster.nodes", "cluster mode: live nodes, as this node last saw them"),
            ("broker.cluster.leases", "cluster mode: live leases in the whole cluster"),
            ("broker.cluster.store_reachable", "cluster mode: 1 while Redis answers this node"),
            ("broker.cluster.pending_outcomes", "cluster mode: lease endings not yet in Redis"),
            (
                "broker.cluster.queue.depth",
                "cluster mode: Acquires waiting in the cluster's queue (every node's, as this "
                "node's last heartbeat read it)",
            ),
        ):
            meter.create_observable_gauge(name, [observe(name)], description=description)
        self._pools = pools
        self._nodes = nodes
        for field, description in (
            ("leases", "cluster mode: live leases per node (attribute node)"),
            ("used", "cluster mode: capacity in use per node (attribute node)"),
        ):
            meter.create_observable_gauge(
                f"broker.cluster.node.{field}",
                [self._observe_nodes(field)],
                description=description,
            )
        for field, description in (
            ("target", "warm sessions a pool aims to keep ready now"),
            ("ready", "warm sessions ready, per pool"),
            ("opening", "warm sessions being opened, per pool"),
        ):
            meter.create_observable_gauge(
                f"broker.pool.{field}", [self._observe_pools(field)], description=description
            )
        for field, description in (
            ("hits", "Acquires served from a warm pool"),
            ("misses", "Acquires of a pooled engine and isolation that opened cold"),
        ):
            meter.create_observable_counter(
                f"broker.pool.{field}", [self._observe_pools(field)], description=description
            )

    def _observe_nodes(self, field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            nodes = self._nodes() if self._nodes is not None else ()
            return [Observation(getattr(n, field), {"node": n.node_id}) for n in nodes]

        return callback

    def _observe_pools(self, field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            statuses = self._pools() if self._pools is not None else []
            return [
                Observation(
                    getattr(status, field),
                    {
                        "engine": status.engine.value,
                        "isolation": status.isolation.value,
                        **({"attach": status.attach.value} if status.attach else {}),
                    },
                )
                for status in statuses
            ]

        return callback

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
                # One pool per engine, isolation and attach protocol: they name a warm lease's.
                **({"lease.pool": _pair(lease)} if lease.warm else {}),
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
                "step.url": self._url(outcome.url),
                "lease.id": lease.id,
            },
        )
        if not outcome.ok:
            kind = outcome.error_kind.value if outcome.error_kind else "error"
            span.set_attribute("step.error_kind", kind)
            message = self._text(outcome.error_message)
            span.set_status(Status(StatusCode.ERROR, f"{kind}: {message}"))
        span.end(end_time=end_ns)
        lease_span = self._spans.get(lease.id)
        if lease_span is not None:
            for event in outcome.page_events:
                attributes = {"page.id": event.page_id, "text": self._text(event.text)}
                lease_span.add_event(event.kind, attributes)

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

    def egress_blocked(self, lease: Lease, blocked: Blocked) -> None:
        self._egress_blocked.add(1, {"rule": blocked.rule, "engine": lease.spec.engine.value})
        span = self._spans.get(lease.id)
        if span is not None:  # host:port and the rule only: no path, no query
            span.add_event("egress.blocked", {"target": blocked.target, "rule": blocked.rule})


def _pair(lease: Lease) -> str:
    attach = lease.spec.attach
    return pool_name(lease.spec.engine, lease.spec.isolation, attach.protocol if attach else None)


def _same(text: str) -> str:
    return text

"""Domain objects to replies: leases, step results, release outcomes, the broker's status."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from broker.cluster.node import ClusterView
from broker.engines.base import EngineCensus
from broker.leases.lease import Lease, ReleaseOutcome, ReleaseReason
from broker.leases.tenants import Tenant
from broker.model.attach import AttachProtocol
from broker.model.options import EngineName, Isolation
from broker.model.steps.base import StepErrorKind, StepOutcome
from broker.runtime.wiring import Broker
from broker.warm.pool import PoolStatus
from browserbroker.v1 import broker_pb2 as pb

ENGINE_TO_PB = {
    EngineName.CHROMIUM: pb.ENGINE_CHROMIUM,
    EngineName.FIREFOX: pb.ENGINE_FIREFOX,
    EngineName.CAMOUFOX: pb.ENGINE_CAMOUFOX,
}
ISOLATION_TO_PB = {
    Isolation.CONTEXT: pb.ISOLATION_CONTEXT,
    Isolation.BROWSER: pb.ISOLATION_BROWSER,
}
ATTACH_TO_PB = {
    AttachProtocol.CDP: pb.ATTACH_PROTOCOL_CDP,
    AttachProtocol.PLAYWRIGHT: pb.ATTACH_PROTOCOL_PLAYWRIGHT,
    AttachProtocol.BIDI: pb.ATTACH_PROTOCOL_BIDI,
}
REASON_TO_PB = {
    ReleaseReason.CLIENT_RELEASE: pb.RELEASE_REASON_CLIENT_RELEASE,
    ReleaseReason.TTL_EXPIRED: pb.RELEASE_REASON_TTL_EXPIRED,
    ReleaseReason.IDLE_TIMEOUT: pb.RELEASE_REASON_IDLE_TIMEOUT,
    ReleaseReason.RUN_CANCELLED: pb.RELEASE_REASON_RUN_CANCELLED,
    ReleaseReason.ENGINE_CRASHED: pb.RELEASE_REASON_ENGINE_CRASHED,
    ReleaseReason.PAGE_CRASHED: pb.RELEASE_REASON_PAGE_CRASHED,
    ReleaseReason.SHUTDOWN: pb.RELEASE_REASON_SHUTDOWN,
    ReleaseReason.ACQUIRE_FAILED: pb.RELEASE_REASON_ACQUIRE_FAILED,
    ReleaseReason.DRIFT_REPAIRED: pb.RELEASE_REASON_DRIFT_REPAIRED,
    ReleaseReason.NODE_LOST: pb.RELEASE_REASON_NODE_LOST,
    ReleaseReason.DRAINED: pb.RELEASE_REASON_DRAINED,
    ReleaseReason.CLIENT_DISCONNECTED: pb.RELEASE_REASON_CLIENT_DISCONNECTED,
}
ERROR_KIND_TO_PB = {
    StepErrorKind.TIMEOUT: pb.STEP_ERROR_KIND_TIMEOUT,
    StepErrorKind.SCRIPT_ERROR: pb.STEP_ERROR_KIND_SCRIPT_ERROR,
    StepErrorKind.NAVIGATION: pb.STEP_ERROR_KIND_NAVIGATION,
    StepErrorKind.SELECTOR: pb.STEP_ERROR_KIND_SELECTOR,
    StepErrorKind.UNSUPPORTED: pb.STEP_ERROR_KIND_UNSUPPORTED,
    StepErrorKind.BROWSER: pb.STEP_ERROR_KIND_BROWSER,
    StepErrorKind.BLOCKED: pb.STEP_ERROR_KIND_BLOCKED,
    StepErrorKind.TOO_LARGE: pb.STEP_ERROR_KIND_TOO_LARGE,
}


def duration(value_s: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(round(value_s * 1e9))
    return d


def timestamp(value: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(value)
    return t


def acquire_response(lease: Lease, connect_url: str = "") -> pb.AcquireResponse:
    assert lease.expires_at_wall is not None
    return pb.AcquireResponse(
        lease_id=lease.id,
        token=lease.token,
        expires_at=timestamp(lease.expires_at_wall),
        engine=ENGINE_TO_PB[lease.spec.engine],
        isolation=ISOLATION_TO_PB[lease.spec.isolation],
        ttl=duration(lease.spec.ttl_s),
        idle_timeout=duration(lease.spec.idle_timeout_s),
        warm=lease.warm,
        queue_wait=duration(lease.queue_wait_s),
        connect_url=connect_url,
    )


def step_result(outcome: StepOutcome) -> pb.StepResult:
    result = pb.StepResult(
        index=outcome.index,
        action=outcome.action,
        ok=outcome.ok,
        duration=duration(outcome.duration_s),
        url=outcome.url,
        http_status=outcome.http_status,
        text=outcome.text,
        found=outcome.found,
        json=outcome.json,
        data=outcome.data,
        page_id=outcome.page_id,
        pages=[
            pb.PageInfo(id=p.id, url=p.url, title=p.title, current=p.current, opener_id=p.opener_id)
            for p in outcome.pages
        ],
        page_events=[
            pb.PageEvent(kind=e.kind, text=e.text, page_id=e.page_id) for e in outcome.page_events
        ],
    )
    if outcome.error_kind is not None:
        result.error.CopyFrom(
            pb.StepError(kind=ERROR_KIND_TO_PB[outcome.error_kind], message=outcome.error_message)
        )
    return result


def release_response(outcome: ReleaseOutcome) -> pb.ReleaseResponse:
    return pb.ReleaseResponse(
        released_now=outcome.released_now,
        reason=REASON_TO_PB[outcome.reason],
        released_at=timestamp(outcome.released_at),
    )


def pool_status(status: PoolStatus) -> pb.PoolStatus:
    return pb.PoolStatus(
        engine=ENGINE_TO_PB[status.engine],
        isolation=ISOLATION_TO_PB[status.isolation],
        target=status.target,
        min_size=status.floor,
        max_size=status.ceiling,
        ready=status.ready,
        opening=status.opening,
        hits=status.hits,
        misses=status.misses,
        attach=ATTACH_TO_PB[status.attach] if status.attach else pb.ATTACH_PROTOCOL_UNSPECIFIED,
    )


def status_response(
    broker: Broker,
    caller: Tenant,
    censuses: Mapping[EngineName, EngineCensus],
    tenants: Sequence[Tenant],
    counts: Mapping[str, tuple[int, int]],
    cluster: ClusterView | None = None,
) -> pb.GetStatusResponse:
    """The broker as `caller` may see it: an admin sees everything, a tenant only its own."""
    leases = broker.leases
    engines = []
    for name, engine in broker.engines.items():
        availability = engine.availability()
        status = pb.EngineStatus(engine=ENGINE_TO_PB[name], available=availability.available)
        census = censuses.get(name)
        if caller.admin and census is not None:  # paths and process counts: operators only
            status.detail = availability.detail
            status.browsers = census.browsers
            status.contexts = census.contexts
            status.pages = census.pages
            status.browsers_retiring = census.retiring
            status.browsers_recycled = census.recycled
        engines.append(status)
    reply = pb.GetStatusResponse(
        warm_pool_size=broker.warm_pool_size,
        draining=leases.draining,
        engines=engines,
        default_engine=ENGINE_TO_PB[broker.settings.default_engine],
        tenant=caller.name,
    )
    if caller.admin:
        reply.capacity = leases.limits.capacity
        reply.active_leases = leases.active_count
        reply.closing_sessions = leases.closing_count
        reply.queued = leases.queued_count
        reply.queue_limit = leases.limits.queue_limit
        reply.drift_repairs = broker.reconciler.repairs
        reply.pools.extend(pool_status(status) for status in broker.pool_statuses())
        if cluster is not None:
            reply.cluster.CopyFrom(cluster_status(cluster))
        for tenant in tenants:
            active, queued = counts[tenant.name]
            reply.tenants.append(
                pb.TenantStatus(
                    name=tenant.name,
                    active_leases=active,
                    queued=queued,
                    max_leases=tenant.max_leases or 0,
                    max_queued=tenant.max_queued or 0,
                )
            )
    else:
        active, queued = counts[caller.name]
        reply.capacity = caller.max_leases or leases.limits.capacity
        reply.active_leases = active
        reply.queued = queued
        reply.queue_limit = caller.max_queued or leases.limits.queue_limit
    return reply


_ENGINE_NAMES = {engine.value for engine in EngineName}


def cluster_status(view: ClusterView) -> pb.ClusterStatus:
    nodes = [
        pb.ClusterNode(
            id=node.node_id,
            address=node.address,
            capacity=node.capacity,
            used=node.used,
            queued=node.queued,
            leases=node.leases,
            engines=[ENGINE_TO_PB[EngineName(e)] for e in node.engines if e in _ENGINE_NAMES],
            last_seen_ms=min(node.last_seen_ms, 2**32 - 1),
            draining=node.draining,
        )
        for node in view.nodes
    ]
    return pb.ClusterStatus(
        node_id=view.node_id,
        store_reachable=view.store_reachable,
        nodes=nodes,
        active_leases=sum(node.leases for node in view.nodes),
    )

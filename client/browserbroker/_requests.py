"""Request building shared by the async and the sync client."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from google.protobuf.duration_pb2 import Duration

from browserbroker.models import AttachProtocol, Engine, Isolation, OnCancel, OnDisconnect
from browserbroker.v1 import broker_pb2 as pb


def duration(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d


@dataclass(frozen=True)
class LeaseGrant:
    lease_id: str
    token: str = field(repr=False)  # a secret: never in a log line
    expires_at: datetime
    engine: Engine
    isolation: Isolation
    ttl_s: float
    idle_timeout_s: float
    warm: bool
    queue_wait_s: float
    # attachable leases: where an attached client connects (a secret: not in its repr)
    connect_url: str = field(default="", repr=False)

    @classmethod
    def from_pb(cls, msg: pb.AcquireResponse) -> LeaseGrant:
        return cls(
            lease_id=msg.lease_id,
            token=msg.token,
            expires_at=msg.expires_at.ToDatetime(),
            engine=Engine(msg.engine),
            isolation=Isolation(msg.isolation),
            ttl_s=msg.ttl.ToNanoseconds() / 1e9,
            idle_timeout_s=msg.idle_timeout.ToNanoseconds() / 1e9,
            warm=msg.warm,
            queue_wait_s=msg.queue_wait.ToNanoseconds() / 1e9,
            connect_url=msg.connect_url,
        )


def acquire_request(
    engine: Engine,
    isolation: Isolation,
    ttl_s: float | None,
    idle_timeout_s: float | None,
    context: pb.ContextOptions | None,
    labels: Mapping[str, str] | None,
    camoufox: pb.CamoufoxOptions | None = None,
    attach: AttachProtocol | str | None = None,
    on_disconnect: OnDisconnect = OnDisconnect.KEEP,
) -> pb.AcquireRequest:
    request = pb.AcquireRequest(
        engine=engine.value, isolation=isolation.value, labels=dict(labels or {})
    )
    if ttl_s is not None:
        request.ttl.CopyFrom(duration(ttl_s))
    if idle_timeout_s is not None:
        request.idle_timeout.CopyFrom(duration(idle_timeout_s))
    if context is not None:
        request.context.CopyFrom(context)
    if camoufox is not None:
        request.camoufox.CopyFrom(camoufox)
    if attach is not None:
        protocol = AttachProtocol[attach.upper()] if isinstance(attach, str) else attach
        request.attach.protocol = protocol.value
        request.attach.on_disconnect = on_disconnect.value
    return request


def run_request(
    grant: LeaseGrant, steps: Iterable[pb.Step], on_cancel: OnCancel, continue_on_error: bool
) -> pb.RunRequest:
    return pb.RunRequest(
        lease_id=grant.lease_id,
        token=grant.token,
        steps=list(steps),
        on_cancel=on_cancel.value,
        continue_on_error=continue_on_error,
    )


def keep_alive_request(grant: LeaseGrant, ttl_s: float | None) -> pb.KeepAliveRequest:
    request = pb.KeepAliveRequest(lease_id=grant.lease_id, token=grant.token)
    if ttl_s is not None:
        request.ttl.CopyFrom(duration(ttl_s))
    return request


def trace_request(grant: LeaseGrant) -> pb.GetTraceRequest:
    return pb.GetTraceRequest(lease_id=grant.lease_id, token=grant.token)


def release_request(grant: LeaseGrant) -> pb.ReleaseRequest:
    return pb.ReleaseRequest(lease_id=grant.lease_id, token=grant.token)

"""Typed exceptions for the broker's status codes (the error contract in the proto)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class BrokerError(Exception):
    """Any error status from the broker. `code` is the gRPC status, `details` its message."""

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        metadata: dict[str, str] | None = None,
        violations: list[FieldViolation] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.metadata = metadata or {}
        self.violations = violations or []
        self.retry_after_s = retry_after_s


class InvalidArgumentError(BrokerError):
    """The request was malformed; `violations` names each bad field."""


class LeaseNotFoundError(BrokerError):
    pass


class PermissionDeniedError(BrokerError):
    """The token does not match the lease."""


class FailedPreconditionError(BrokerError):
    pass


class LeaseEndedError(FailedPreconditionError):
    """The lease has ended; `reason` says why (e.g. "ttl_expired")."""

    @property
    def reason(self) -> str:
        return self.metadata.get("release_reason", "")


class EngineUnavailableError(FailedPreconditionError):
    """The engine cannot run on the broker's machine (e.g. its browser is not installed)."""


class ResourceExhaustedError(BrokerError):
    """A bound or quota was reached; `limit` names it as the broker's docs do (e.g.
    "tenant_max_leases", "runs_waiting_per_lease"), empty when gRPC itself refused (for
    example a message over the size limit)."""

    @property
    def limit(self) -> str:
        return self.metadata.get("limit", "")


class QueueFullError(ResourceExhaustedError):
    """The broker is at capacity and its queue is full; retry after `retry_after_s`."""


class UnauthenticatedError(BrokerError):
    """No valid credential: a missing or unknown token, or no client certificate."""


class DeadlineExceededError(BrokerError):
    pass


class CancelledError(BrokerError):
    pass


class UnavailableError(BrokerError):
    """The broker is draining or unreachable."""


class SessionCrashedError(BrokerError):
    """The browser died during a Run; `metadata["lease_fate"]` says what became of the lease."""


_BY_CODE: dict[grpc.StatusCode, type[BrokerError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: LeaseNotFoundError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.CANCELLED: CancelledError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.ABORTED: SessionCrashedError,
}


@dataclass
class _Details:
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: list[FieldViolation] = field(default_factory=list)
    retry_after_s: float | None = None


def _parse_details(error: grpc.RpcError) -> _Details:
    """Rich details (google.rpc.*) when googleapis-common-protos is installed; else nothing."""
    parsed = _Details()
    trailing: Any = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    raw = next((value for key, value in (trailing or ()) if key == "grpc-status-details-bin"), None)
    if not isinstance(raw, bytes):
        return parsed
    try:
        from google.rpc import error_details_pb2, status_pb2
    except ImportError:
        return parsed
    status = status_pb2.Status.FromString(raw)
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        retry = error_details_pb2.RetryInfo()
        quota = error_details_pb2.QuotaFailure()
        if detail.Unpack(quota):
            for violation in quota.violations[:1]:
                parsed.metadata["limit"] = violation.subject
        elif detail.Unpack(info):
            parsed.reason = info.reason
            parsed.metadata.update(info.metadata)
        elif detail.Unpack(bad):
            parsed.violations += [
                FieldViolation(v.field, v.description) for v in bad.field_violations
            ]
        elif detail.Unpack(retry):
            parsed.retry_after_s = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
    return parsed


def from_rpc_error(error: grpc.RpcError) -> BrokerError:
    """The typed exception for a failed call."""
    code: grpc.StatusCode = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details: str = (error.details() if hasattr(error, "details") else None) or str(error)
    extra = _parse_details(error)
    cls = _BY_CODE.get(code, BrokerError)
    if code is grpc.StatusCode.FAILED_PRECONDITION:
        if extra.reason == "ENGINE_UNAVAILABLE" or "engine" in extra.metadata:
            cls = EngineUnavailableError
        elif extra.reason == "LEASE_ENDED" or " ended at " in details:
            cls = LeaseEndedError
    if (
        code is grpc.StatusCode.RESOURCE_EXHAUSTED
        and extra.metadata.get("limit") == "acquire_queue"
    ):
        cls = QueueFullError
    return cls(code, details, extra.metadata, extra.violations, extra.retry_after_s)

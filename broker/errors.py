"""Domain errors. Plain exceptions with no gRPC import: the RPC layer maps them in one table."""

from __future__ import annotations

from dataclasses import dataclass, field


class BrokerError(Exception):
    """Base of every error the broker reports to a caller."""


@dataclass
class FieldViolation:
    field: str
    description: str


class InvalidArgument(BrokerError):
    """A request field is malformed; names every bad field."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))

    @classmethod
    def single(cls, field_name: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field_name, description)])


class LeaseNotFound(BrokerError):
    def __init__(self, lease_id: str) -> None:
        self.lease_id = lease_id
        super().__init__(f"unknown lease {lease_id!r}")


class PermissionDenied(BrokerError):
    def __init__(self, lease_id: str) -> None:
        self.lease_id = lease_id
        super().__init__(f"token does not match lease {lease_id!r}")


class LeaseEnded(BrokerError):
    """The lease has been released; carries why, so callers learn the original cause."""

    def __init__(self, lease_id: str, reason: str, released_at_iso: str) -> None:
        self.lease_id = lease_id
        self.reason = reason
        self.released_at_iso = released_at_iso
        super().__init__(f"lease {lease_id!r} ended at {released_at_iso}: {reason}")


class QueueFull(BrokerError):
    def __init__(self, queue_limit: int, retry_after_s: float) -> None:
        self.queue_limit = queue_limit
        self.retry_after_s = retry_after_s
        super().__init__(
            f"acquire queue is full ({queue_limit} waiting); retry in about {retry_after_s:.1f}s"
        )


class DeadlineExceeded(BrokerError):
    pass


class Cancelled(BrokerError):
    pass


class Unavailable(BrokerError):
    """The broker is draining or an engine could not start a browser."""


class AttachOnly(BrokerError):
    """The lease's browser is driven by its attached client alone: it takes no Run."""


class EngineNotInstalled(BrokerError):
    """The engine cannot run on this machine (for example its browser is not installed)."""

    def __init__(self, engine: str, detail: str) -> None:
        self.engine = engine
        self.detail = detail
        super().__init__(f"engine {engine} is not available: {detail}")


@dataclass
class SessionCrashed(BrokerError):
    """The browser or page died while a Run was in flight; `lease_fate` tells the caller."""

    lease_id: str
    cause: str
    lease_fate: str = field(default="released")

    def __str__(self) -> str:
        return (
            f"{self.cause} during Run on lease {self.lease_id!r}; the lease was {self.lease_fate}"
        )


class Unauthenticated(BrokerError):
    """No valid credential: a missing or unknown bearer token, or no client certificate."""


class NotPermitted(BrokerError):
    """The caller's tenant may not do this (an engine, an isolation, operator details)."""


class LimitExceeded(BrokerError):
    """A bound or quota would be exceeded; `limit` names it as the docs do."""

    def __init__(self, limit: str, message: str, retry_after_s: float = 0.0) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        super().__init__(message)

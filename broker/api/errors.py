"""The error contract: one table from domain errors to gRPC status codes, with rich details."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from broker.errors import (
    AttachOnly,
    BrokerError,
    Cancelled,
    DeadlineExceeded,
    EngineNotInstalled,
    InvalidArgument,
    LeaseEnded,
    LeaseNotFound,
    LimitExceeded,
    NotPermitted,
    PermissionDenied,
    QueueFull,
    SessionCrashed,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger("broker.rpc")

DOMAIN = "browserbroker.v1"

STATUS_FOR: dict[type[BrokerError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    LeaseNotFound: grpc.StatusCode.NOT_FOUND,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    LeaseEnded: grpc.StatusCode.FAILED_PRECONDITION,
    EngineNotInstalled: grpc.StatusCode.FAILED_PRECONDITION,
    AttachOnly: grpc.StatusCode.FAILED_PRECONDITION,
    QueueFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    Cancelled: grpc.StatusCode.CANCELLED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    SessionCrashed: grpc.StatusCode.ABORTED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    NotPermitted: grpc.StatusCode.PERMISSION_DENIED,
    LimitExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def status_code(error: BrokerError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in STATUS_FOR:
            return STATUS_FOR[cls]
    return grpc.StatusCode.INTERNAL


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _details(error: BrokerError) -> list[any_pb2.Any]:
    match error:
        case InvalidArgument(violations=violations):
            return [
                _pack(
                    error_details_pb2.BadRequest(
                        field_violations=[
                            error_details_pb2.BadRequest.FieldViolation(
                                field=v.field, description=v.description
                            )
                            for v in violations
                        ]
                    )
                )
            ]
        case LeaseEnded():
            info = {
                "lease_id": error.lease_id,
                "release_reason": error.reason,
                "released_at": error.released_at_iso,
            }
            return [
                _pack(
                    error_details_pb2.ErrorInfo(reason="LEASE_ENDED", domain=DOMAIN, metadata=info)
                )
            ]
        case QueueFull():
            delay = duration_pb2.Duration()
            delay.FromMilliseconds(round(error.retry_after_s * 1000))
            return [
                _pack(error_details_pb2.RetryInfo(retry_delay=delay)),
                _pack(
                    error_details_pb2.QuotaFailure(
                        violations=[
                            error_details_pb2.QuotaFailure.Violation(
                                subject="acquire_queue",
                                description=f"{error.queue_limit} callers already waiting",
                            )
                        ]
                    )
                ),
            ]
        case SessionCrashed():
            info = {
                "lease_id": error.lease_id,
                "cause": error.cause,
                "lease_fate": error.lease_fate,
            }
            return [
                _pack(
                    error_details_pb2.ErrorInfo(
                        reason="SESSION_CRASHED", domain=DOMAIN, metadata=info
                    )
                )
            ]
        case LimitExceeded():
            details = [
                _pack(
                    error_details_pb2.QuotaFailure(
                        violations=[
                            error_details_pb2.QuotaFailure.Violation(
                                subject=error.limit, description=str(error)
                            )
                        ]
                    )
                )
            ]
            if error.retry_after_s > 0:
                delay = duration_pb2.Duration()
                delay.FromMilliseconds(round(error.retry_after_s * 1000))
                details.insert(0, _pack(error_details_pb2.RetryInfo(retry_delay=delay)))
            return details
        case EngineNotInstalled():
            info = {"engine": error.engine, "detail": error.detail}
            return [
                _pack(
                    error_details_pb2.ErrorInfo(
                        reason="ENGINE_UNAVAILABLE", domain=DOMAIN, metadata=info
                    )
                )
            ]
    return []


async def abort(context: aio.ServicerContext[Any, Any], error: BrokerError) -> NoReturn:
    remaining = context.time_remaining()
    if context.done() or (remaining is not None and remaining <= 0):
        # The call already ended (its deadline passed, or the client left): there is nobody to
        # send a status to, and gRPC would log the failed send as a servicer error.
        raise asyncio.CancelledError
    code = status_code(error)
    status = status_pb2.Status(code=code.value[0], message=str(error), details=_details(error))
    await context.abort(
        code,
        str(error),
        trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
    )
    raise AssertionError("unreachable")  # context.abort always raises


Req = TypeVar("Req")
Resp = TypeVar("Resp")
Self = TypeVar("Self")


@dataclass(frozen=True)
class Malformed:
    """A request whose bytes are not the message the method takes (see `tolerant`)."""

    message_type: str
    error: str

    def as_error(self) -> InvalidArgument:
        return InvalidArgument.single(
            "request", f"not a valid {self.message_type}: {self.error or 'undecodable bytes'}"
        )


def tolerant(parse: Callable[[bytes], Any], message_type: str) -> Callable[[bytes], Any]:
    """A request deserializer that hands undecodable bytes to the handler as `Malformed`, so
    they are answered INVALID_ARGUMENT like any bad field (gRPC would say UNKNOWN)."""

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as exc:
            return Malformed(message_type, str(exc))

    return deserialize


def unary(
    handler: Callable[[Self, Req, aio.ServicerContext[Req, Resp]], Awaitable[Resp]],
) -> Callable[[Self, Req, aio.ServicerContext[Req, Resp]], Awaitable[Resp]]:
    """Maps domain errors raised by a unary handler to their status."""

    @functools.wraps(handler)
    async def wrapper(self: Self, request: Req, context: aio.ServicerContext[Req, Resp]) -> Resp:
        try:
            if isinstance(request, Malformed):
                raise request.as_error()
            return await handler(self, request, context)
        except BrokerError as error:
            await abort(context, error)

    return wrapper


def streaming(
    handler: Callable[[Self, Req, aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]],
) -> Callable[[Self, Req, aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]]:
    """Maps domain errors raised by a server-streaming handler to their status."""

    @functools.wraps(handler)
    async def wrapper(
        self: Self, request: Req, context: aio.ServicerContext[Req, Resp]
    ) -> AsyncIterator[Resp]:
        try:
            if isinstance(request, Malformed):
                raise request.as_error()
            async for item in handler(self, request, context):
                yield item
        except BrokerError as error:
            await abort(context, error)

    return wrapper

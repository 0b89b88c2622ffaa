"""Python client for the browser-session broker.

from browserbroker import BrokerClient, steps

with BrokerClient("127.0.0.1:50051") as client, client.lease(ttl=60) as lease:
    result = lease.run(steps.goto("https://example.org"), steps.text("h1"), timeout=30)
    print(result[1].text)
"""

from browserbroker import steps
from browserbroker._requests import LeaseGrant
from browserbroker.aio import AsyncBrokerClient, AsyncLease
from browserbroker.errors import (
    BrokerError,
    CancelledError,
    DeadlineExceededError,
    EngineUnavailableError,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    LeaseEndedError,
    LeaseNotFoundError,
    PermissionDeniedError,
    QueueFullError,
    ResourceExhaustedError,
    SessionCrashedError,
    UnauthenticatedError,
    UnavailableError,
)
from browserbroker.models import (
    AttachProtocol,
    Engine,
    Isolation,
    OnCancel,
    OnDisconnect,
    PageEvent,
    PageInfo,
    ReleaseResult,
    RunResult,
    StepFailedError,
    StepResult,
)
from browserbroker.sync import BrokerClient, Lease
from browserbroker.v1.broker_pb2 import (
    CamoufoxOptions,
    ContextOptions,
    Cookie,
    Geolocation,
    InputFile,
    Proxy,
    Viewport,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncBrokerClient",
    "AsyncLease",
    "AttachProtocol",
    "BrokerClient",
    "BrokerError",
    "CamoufoxOptions",
    "CancelledError",
    "ContextOptions",
    "Cookie",
    "DeadlineExceededError",
    "Engine",
    "EngineUnavailableError",
    "FailedPreconditionError",
    "FieldViolation",
    "Geolocation",
    "InputFile",
    "InvalidArgumentError",
    "Isolation",
    "Lease",
    "LeaseEndedError",
    "LeaseGrant",
    "LeaseNotFoundError",
    "OnCancel",
    "OnDisconnect",
    "PageEvent",
    "PageInfo",
    "PermissionDeniedError",
    "Proxy",
    "QueueFullError",
    "ReleaseResult",
    "ResourceExhaustedError",
    "RunResult",
    "SessionCrashedError",
    "StepFailedError",
    "StepResult",
    "UnauthenticatedError",
    "UnavailableError",
    "Viewport",
    "__version__",
    "steps",
]

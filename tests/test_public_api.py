"""The SDK's public surface, and that importing it stays light (no browser stack, no daemon)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import browserbroker

EXPECTED_ALL = [
    "AsyncBrokerClient",
    "AsyncLease",
    "BrokerClient",
    "BrokerError",
    "CamoufoxOptions",
    "CancelledError",
    "ContextOptions",
    "AttachProtocol",
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
    "ResourceExhaustedError",
    "ReleaseResult",
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

FORBIDDEN = ("playwright", "camoufox", "broker")


def test_all_is_exactly_the_documented_surface() -> None:
    assert sorted(browserbroker.__all__) == sorted(EXPECTED_ALL)
    assert len(browserbroker.__all__) == len(set(browserbroker.__all__)), "duplicates in __all__"


def test_every_exported_name_is_importable() -> None:
    fresh = importlib.import_module("browserbroker")
    for name in EXPECTED_ALL:
        assert getattr(fresh, name, None) is not None, name
    namespace: dict[str, object] = {}
    exec("from browserbroker import *", namespace)
    assert set(EXPECTED_ALL) - {"__version__"} <= set(namespace)


def test_errors_form_one_hierarchy() -> None:
    for name in EXPECTED_ALL:
        value = getattr(browserbroker, name)
        if isinstance(value, type) and name.endswith("Error") and name != "StepFailedError":
            assert issubclass(value, browserbroker.BrokerError), name
    assert issubclass(browserbroker.LeaseEndedError, browserbroker.FailedPreconditionError)
    assert issubclass(browserbroker.EngineUnavailableError, browserbroker.FailedPreconditionError)


def test_importing_the_sdk_pulls_in_no_browser_stack_and_no_daemon(tmp_path: Path) -> None:
    # A fresh interpreter, started outside the repository so `broker` is not importable by accident
    # from the working directory; it reports every module the import loaded.
    code = (
        "import json, sys\n"
        "import browserbroker, browserbroker.aio, browserbroker.sync, browserbroker.errors\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout)
    assert "browserbroker" in loaded
    leaked = sorted(
        name for name in loaded for top in FORBIDDEN if name == top or name.startswith(top + ".")
    )
    assert not leaked, f"`import browserbroker` imported {leaked}"

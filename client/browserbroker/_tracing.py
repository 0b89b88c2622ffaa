"""Carries the caller's OpenTelemetry trace context on every call, when OpenTelemetry is installed."""

from __future__ import annotations

try:
    from opentelemetry import propagate as _propagate
except ImportError:  # the SDK works without OpenTelemetry
    _propagate = None  # type: ignore[assignment]


def trace_metadata() -> tuple[tuple[str, str], ...]:
    if _propagate is None:
        return ()
    carrier: dict[str, str] = {}
    _propagate.inject(carrier)
    return tuple(carrier.items())

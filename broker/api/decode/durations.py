"""Durations on the wire to seconds, bounded where a request sets them."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration

from broker.errors import FieldViolation


def seconds(duration: Duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def bounded_duration(
    field_name: str, value: Duration, default_s: float, max_s: float, out: list[FieldViolation]
) -> float:
    """`value` in seconds, 1..`max_s`; unset (0) is `default_s`."""
    if value.seconds < 0 or value.nanos < 0:
        out.append(FieldViolation(field_name, "must not be negative"))
        return default_s
    value_s = seconds(value)
    if value_s == 0:
        return default_s
    if value_s > max_s:
        out.append(FieldViolation(field_name, f"{value_s:g}s exceeds the maximum of {max_s:g}s"))
    elif value_s < 1:
        out.append(FieldViolation(field_name, f"{value_s:g}s is below the minimum of 1s"))
    return value_s

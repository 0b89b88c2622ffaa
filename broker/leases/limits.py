"""The bounds the lease table enforces: capacity, queue, lifetimes, tombstones, cleanup."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    capacity: int = 8
    queue_limit: int = 64
    default_ttl_s: float = 300.0
    max_ttl_s: float = 3600.0
    default_idle_timeout_s: float = 120.0
    max_idle_timeout_s: float = 3600.0
    # TTL expiries are pulled earlier by up to this fraction of the TTL (capped by max_jitter_s),
    # so a burst of leases granted together does not end in one burst of browser closes.
    ttl_jitter_fraction: float = 0.1
    max_jitter_s: float = 30.0
    tombstone_ttl_s: float = 600.0
    tombstone_max: int = 10_000
    cleanup_timeout_s: float = 10.0
    max_runs_waiting: int = 4  # Runs that may wait behind the running one on a lease
    # A Run's results not yet taken by its stream: the next step waits beyond either bound.
    run_buffer_results: int = 4
    run_buffer_bytes: int = 1024 * 1024
    open_timeout_s: float = 60.0  # opening a session, when the caller set no shorter deadline

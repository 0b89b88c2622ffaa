"""What recent history says about how long things take: opening a session, holding a lease.

Used to refuse a cold launch that cannot finish before the caller's deadline, and to tell a
caller turned away by a full queue when to come back.
"""

from __future__ import annotations

from collections import deque

from broker.model.options import EngineName, Isolation


def _median(values: deque[float]) -> float:
    return sorted(values)[len(values) // 2]


class Estimates:
    def __init__(self) -> None:
        # Per engine and isolation: a Chromium context opens in 0.2 s, a Firefox browser in 3 s.
        self._open_times: dict[tuple[EngineName, Isolation], deque[float]] = {}
        self._lease_seconds: deque[float] = deque(maxlen=64)

    def session_opened(self, engine: EngineName, isolation: Isolation, seconds: float) -> None:
        self._open_times.setdefault((engine, isolation), deque(maxlen=32)).append(seconds)

    def lease_ended(self, seconds: float) -> None:
        self._lease_seconds.append(seconds)

    def expected_open_s(self, engine: EngineName, isolation: Isolation) -> float | None:
        """The median of recent cold opens; None until there are three."""
        times = self._open_times.get((engine, isolation))
        if times is None or len(times) < 3:
            return None
        return _median(times)

    def retry_hint(self, queued: int, capacity: int) -> float:
        """Seconds until a slot is likely free for a caller behind `queued` others."""
        typical = _median(self._lease_seconds) if self._lease_seconds else 1.0
        return max(0.5, typical * (queued + 1) / max(1, capacity))

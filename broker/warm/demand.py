"""Recent demand per pool (engine, isolation, attach protocol): the most leases of a pool's kind
held at once in a window.

A pool that follows demand sets its target to this peak (between its floor and ceiling), so after
a burst of eight dedicated-Firefox leases it keeps eight ready for the next one, and sinks back to
its floor once a window passes without such a burst.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable

# What a pool serves: (engine, isolation, attach protocol or None); any hashable key will do.
Pair = Hashable


class Demand:
    def __init__(self, window_s: float, now: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._now = now
        # Per pair, (time, leases held) with falling counts: the front is the window's peak.
        self._samples: dict[Pair, deque[tuple[float, int]]] = {}

    def observe(self, pair: Pair, held: int) -> None:
        """`held` leases of `pair` are active now (counted as an Acquire of it is admitted)."""
        samples = self._samples.setdefault(pair, deque())
        while samples and samples[-1][1] <= held:
            samples.pop()  # a smaller, older count can never be the peak again
        samples.append((self._now(), held))

    def peak(self, pair: Pair) -> int:
        samples = self._samples.get(pair)
        if not samples:
            return 0
        horizon = self._now() - self.window_s
        while samples and samples[0][0] < horizon:
            samples.popleft()
        return samples[0][1] if samples else 0

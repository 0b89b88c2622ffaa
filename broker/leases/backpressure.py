"""Backpressure: the bounded buffer between a Run's steps and the stream that sends their results.

A Run puts each step's outcome here and its stream takes them out. When the buffer holds
`max_items` outcomes, or `max_bytes` of them, the next put waits until the reader has taken one,
so a Run never runs more than a few results ahead of a client that does not read. One outcome
larger than `max_bytes` still goes in when the buffer is empty: its size is bounded already, by
max_result_bytes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from broker.model.steps.base import StepOutcome

# What a listed page or a page event costs besides its strings (ids, framing), roughly.
_PER_ENTRY_BYTES = 64


def outcome_bytes(outcome: StepOutcome) -> int:
    """An outcome's size, as far as its memory goes: its payload and the strings a page set."""
    size = len(outcome.text) + len(outcome.json) + len(outcome.data)
    size += len(outcome.url) + len(outcome.error_message)
    size += sum(_PER_ENTRY_BYTES + len(p.url) + len(p.title) for p in outcome.pages)
    size += sum(_PER_ENTRY_BYTES + len(e.text) for e in outcome.page_events)
    return size


class ResultBuffer:
    def __init__(self, max_items: int, max_bytes: int) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: deque[tuple[StepOutcome, int]] = deque()
        self._bytes = 0
        self._ended = False
        self._taken = asyncio.Event()  # the reader took an outcome: there may be room
        self._added = asyncio.Event()  # an outcome (or the end) arrived

    def __len__(self) -> int:
        return len(self._items)

    def _has_room(self, size: int) -> bool:
        if not self._items:
            return True
        return len(self._items) < self.max_items and self._bytes + size <= self.max_bytes

    async def put(self, outcome: StepOutcome, waiting: Callable[[bool], None]) -> None:
        """Add `outcome`, first waiting for room; `waiting(True)` and `waiting(False)` bracket
        the wait for the reader (it is not the Run's own work)."""
        size = outcome_bytes(outcome)
        if not self._has_room(size):
            waiting(True)
            try:
                while not self._has_room(size):
                    self._taken.clear()
                    await self._taken.wait()
            finally:
                waiting(False)
        self._items.append((outcome, size))
        self._bytes += size
        self._added.set()

    def end(self) -> None:
        """No more outcomes: the reader gets what is left, then None."""
        self._ended = True
        self._added.set()

    async def get(self) -> StepOutcome | None:
        """The next outcome; None once the buffer ended and is empty."""
        while not self._items:
            if self._ended:
                return None
            self._added.clear()
            await self._added.wait()
        outcome, size = self._items.popleft()
        self._bytes -= size
        self._taken.set()
        return outcome

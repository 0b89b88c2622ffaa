"""Bounds on what one attached client may ask of its lease's browser."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AttachLimits:
    max_message_bytes: int = 4 * 1024 * 1024  # one protocol message from a client
    messages_per_s: float = 500.0  # sustained rate of a client's messages
    burst: int = 1000  # messages a client may send at once above the rate
    max_targets: int = 16  # pages (tabs, popups) open at once in the lease's browser
    max_clients: int = 4  # clients attached to one lease at once
    max_pending: int = 1000  # a client's commands the browser has not answered yet
    # a client's command unanswered this long is answered with an error and forgotten
    command_timeout_s: float = 600.0
    max_download_bytes: int = 8 * 1024 * 1024  # one file a client downloads (max_download_bytes)
    max_downloads_bytes: int = 64 * 1024 * 1024  # all of a lease's downloads
    # the largest message from the browser a client is sent (a bigger answer: an error)
    max_browser_message_bytes: int = 16 * 1024 * 1024


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved; `take` says whether one was there."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.at = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

"""What a lease asks of an attached client: the protocol its socket speaks, and what happens to
the lease when the client goes away."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class AttachProtocol(StrEnum):
    CDP = "cdp"  # Chrome DevTools Protocol (Chromium)
    PLAYWRIGHT = "playwright"  # Playwright's own protocol (not served yet)
    BIDI = "bidi"  # WebDriver BiDi (not served yet)


class OnDisconnect(StrEnum):
    KEEP = "keep"  # the lease lives on until its TTL, idle timeout or Release
    END = "end"  # the lease ends (client_disconnected) when its last client disconnects


@dataclass(frozen=True)
class AttachOptions:
    protocol: AttachProtocol
    on_disconnect: OnDisconnect = OnDisconnect.KEEP

"""What a lease asks of an attached client: the protocol its socket speaks, and what happens to
the lease when the client goes away."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class AttachProtocol(StrEnum):
    CDP = "cdp"  # Chrome DevTools Protocol (Chromium)
    PLAYWRIGHT = "playwright"  # Playwright's own protocol (not served yet)
    BIDI = "bidi"  # WebDriver BiDi (Firefox; attach-only: see ATTACH_ONLY)


class OnDisconnect(StrEnum):
    KEEP = "keep"  # the lease lives on until its TTL, idle timeout or Release
    END = "end"  # the lease ends (client_disconnected) when its last client disconnects


# Why a Run on a lease of this protocol is refused (FAILED_PRECONDITION): Firefox serves one
# WebDriver BiDi session at a time, and the attached client's is it, so the broker's own
# Playwright has none to drive the browser with.
ATTACH_ONLY = {
    AttachProtocol.BIDI: (
        "this lease is attach-only: Firefox serves one WebDriver BiDi session at a time and its "
        "attached client's is it, so the broker has none to run steps in; drive it over the "
        "connect_url"
    ),
}


@dataclass(frozen=True)
class AttachOptions:
    protocol: AttachProtocol
    on_disconnect: OnDisconnect = OnDisconnect.KEEP
